"""What the face pipeline needs of a detector model and of an embedder model.

``models/detector.py`` (the passes over a photo, the quality gate) and
``models/embedder.py`` (alignment, batching, normalisation) work through these two
interfaces only, so SCRFD and YuNet, ArcFace and SFace are interchangeable under them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .session import OnnxModel, fixed


@dataclass(frozen=True)
class RawDetections:
    """One pass's faces in the pixels of the view it was given, best score first."""

    boxes: np.ndarray  # (n, 4) float32: x1, y1, x2, y2
    landmarks: np.ndarray  # (n, 5, 2) float32: the image-left eye, the other eye, nose, mouth corners
    scores: np.ndarray  # (n,) float32

    def __len__(self) -> int:
        return len(self.scores)


class DetectorModel(OnnxModel, ABC):
    @abstractmethod
    def detect(self, image: np.ndarray, input_size: tuple[int, int], threshold: float) -> RawDetections:
        """Faces scoring at least ``threshold`` in a BGR view shown to the network at
        ``input_size`` (width, height), after its own non-maximum suppression."""


class EmbedderModel(OnnxModel, ABC):
    crop_size: int  # the side of the aligned crop the network takes

    @property
    def dim(self) -> int:
        return fixed(self.output_shape[-1])

    @abstractmethod
    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, dim) raw float32 features of aligned BGR crops, in one batched run."""
