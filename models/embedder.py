"""Embeddings of aligned faces, all faces of a photo in one batched call, for any embedder models.

A pack with several embedders runs each on the same aligned crops and fuses their
normalised embeddings (``models.packs.fused``); a pack it serves is given one part alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import transforms
from .base import EmbedderModel
from .packs import ModelPack, ModelPackError, fused
from .zoo import embedder_model


class FaceEmbedder:
    def __init__(self, pack: ModelPack, threads: int = 1, models: Sequence[EmbedderModel] | None = None) -> None:
        self.models = list(models or [embedder_model(weights, threads) for weights in pack.embedders])
        sizes = {model.crop_size for model in self.models}
        if len(sizes) != 1:
            raise ModelPackError(f"model pack {pack.name!r}: its embedders take crops of different sizes {sizes}")
        self.crop_size = sizes.pop()
        self.dims = [model.dim for model in self.models]
        self.dim = sum(self.dims)

    @property
    def model(self) -> EmbedderModel:
        """The first (for most packs, the only) embedder model."""
        return self.models[0]

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 5-point similarity warp ArcFace, SFace and EdgeFace were trained on."""
        return transforms.aligned(image, landmarks, self.crop_size)

    def dim_of(self, parts: Sequence[int] | None = None) -> int:
        return self.dim if parts is None else sum(self.dims[part] for part in parts)

    def embed_crops(self, crops: list[np.ndarray], parts: Sequence[int] | None = None) -> np.ndarray:
        """(n, dim) float32 unit vectors, so inner product is cosine similarity: every embedder's
        (or those of ``parts``) normalised and fused."""
        chosen = range(len(self.models)) if parts is None else parts
        if not crops:
            return np.zeros((0, self.dim_of(parts)), dtype=np.float32)
        return fused([normalised(self.models[part].embed(crops)) for part in chosen])


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
