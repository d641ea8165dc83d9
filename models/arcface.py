"""ArcFace (InsightFace) embeddings: RGB crops scaled to [-1, 1], as InsightFace's ArcFaceONNX feeds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import transforms
from .base import EmbedderModel
from .runtime import REFERENCE, Runtime
from .session import fixed

MEAN, STD = 127.5, 127.5


class ArcFace(EmbedderModel):
    def __init__(self, model: Path | bytes, threads: int = 1, runtime: Runtime = REFERENCE) -> None:
        super().__init__(model, threads, runtime)
        self.crop_size = fixed(self.input_shape[3])

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        side = (self.crop_size, self.crop_size)
        return self.run(transforms.blob(crops, side, MEAN, STD, rgb=True))[0]
