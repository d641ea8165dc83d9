"""The whole model pipeline: image bytes or pixels in, embedded faces out."""

from __future__ import annotations

import numpy as np

from .decode import decode_image
from .detector import FaceDetector
from .embedder import FaceEmbedder
from .faces import Face
from .packs import ModelPack, load_pack


class FaceAnalyzer:
    """Owns one detector and one embedder session; safe to share between threads."""

    def __init__(self, pack: ModelPack, threads: int = 1) -> None:
        self.pack = pack
        self.detector = FaceDetector(pack, threads)
        self.embedder = FaceEmbedder(pack, threads)

    @classmethod
    def from_name(cls, name_or_path: str, threads: int = 1) -> FaceAnalyzer:
        return cls(load_pack(name_or_path), threads)

    @property
    def pack_name(self) -> str:
        return self.pack.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face in a BGR photo, largest first, each embedded."""
        detections = self.detector.detect(image)
        crops = [self.embedder.align(image, d.landmarks) for d in detections]
        vectors = self.embedder.embed_crops(crops)
        return [Face(detection=d, embedding=v) for d, v in zip(detections, vectors, strict=False)]

    def faces_in_bytes(self, data: bytes) -> list[Face]:
        return self.faces(decode_image(data))
