"""Embeddings of aligned faces, all faces of a photo in one batched call, for any embedder model."""

from __future__ import annotations

import numpy as np

from . import transforms
from .base import EmbedderModel
from .packs import ModelPack
from .zoo import embedder_model


class FaceEmbedder:
    def __init__(self, pack: ModelPack, threads: int = 1, model: EmbedderModel | None = None) -> None:
        self.model = model or embedder_model(pack.embedder, threads)
        self.crop_size = self.model.crop_size
        self.dim = self.model.dim

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 5-point similarity warp both ArcFace and SFace were trained on."""
        return transforms.aligned(image, landmarks, self.crop_size)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 unit vectors, so inner product is cosine similarity."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self.model.embed(crops), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
