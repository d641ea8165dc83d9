"""ArcFace embeddings of aligned faces, all faces of a photo in one batched call."""

from __future__ import annotations

import warnings

import numpy as np
from insightface.model_zoo import get_model
from insightface.utils import face_align

from .packs import ModelPack
from .runtime import PROVIDERS, session_options


class FaceEmbedder:
    def __init__(self, pack: ModelPack, threads: int = 1) -> None:
        self.model = get_model(str(pack.embedder.path), providers=PROVIDERS, sess_options=session_options(threads))
        self.crop_size = int(self.model.input_size[0])
        self.dim = int(self.model.output_shape[-1])

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 5-point similarity warp ArcFace was trained on."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return face_align.norm_crop(image, landmark=landmarks, image_size=self.crop_size)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 unit vectors, so inner product is cosine similarity."""
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self.model.get_feat(crops), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
