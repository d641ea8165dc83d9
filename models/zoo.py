"""Which class runs each of a pack's networks, and what it is given to open.

A pack's manifest names its detector (``scrfd``, ``yunet``) and embedder (``arcface``,
``sface``, ``edgeface``) models, and the runtime each runs on (models/runtime.py).
Weights shipped block-quantised are converted to float32 in memory first, and the
converted model is held to its own pinned SHA-256: a different ``onnx`` release that
serialised the conversion differently would be caught here, at start-up, rather than
as embeddings that no longer match the gallery's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .arcface import ArcFace
from .base import DetectorModel, EmbedderModel
from .dequantize import float32_model
from .edgeface import EdgeFace
from .packs import ModelFile, ModelPackError
from .scrfd import Scrfd
from .sface import SFace
from .yunet import YuNet

DETECTORS: dict[str, type[DetectorModel]] = {"scrfd": Scrfd, "yunet": YuNet}
EMBEDDERS: dict[str, type[EmbedderModel]] = {"arcface": ArcFace, "sface": SFace, "edgeface": EdgeFace}


def network(weights: ModelFile) -> Path | bytes:
    """The file to open, or the float32 model converted from it (checked against its pin)."""
    if weights.float32_sha256 is None:
        return weights.path
    converted = float32_model(weights.path)
    actual = hashlib.sha256(converted).hexdigest()
    if actual != weights.float32_sha256:
        raise ModelPackError(
            f"{weights.path} converted to float32 has SHA-256 {actual}, expected {weights.float32_sha256}: "
            "the conversion changed (another onnx version?); pin the new digest only after re-measuring accuracy"
        )
    return converted


def _chosen(kinds: dict, weights: ModelFile):
    if weights.model not in kinds:
        raise ModelPackError(f"{weights.path.name}: unknown model {weights.model!r} (known: {', '.join(kinds)})")
    return kinds[weights.model]


def detector_model(weights: ModelFile, threads: int = 1) -> DetectorModel:
    return _chosen(DETECTORS, weights)(network(weights), threads, weights.runtime)


def embedder_model(weights: ModelFile, threads: int = 1) -> EmbedderModel:
    model = _chosen(EMBEDDERS, weights)(network(weights), threads, weights.runtime)
    if weights.dim is not None and model.dim != weights.dim:
        raise ModelPackError(f"{weights.path} embeds {model.dim}-d vectors; the pack's manifest says {weights.dim}")
    return model
