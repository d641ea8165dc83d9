"""The typed outputs of the face pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One detected face in the photo's own pixel coordinates."""

    bbox: np.ndarray  # (4,) float32: x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2) float32: eyes, nose, mouth corners
    score: float

    @property
    def size(self) -> float:
        """The shorter side of the box: what limits how well the face can be recognised."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


@dataclass(frozen=True)
class Face:
    detection: Detection
    embedding: np.ndarray  # (dim,) float32, L2-normalised

    def box(self) -> list[float]:
        return [round(float(v), 1) for v in self.detection.bbox]
