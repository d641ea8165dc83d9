"""Which class runs each of a pack's networks, and what it is given to open.

A pack's manifest names its detector (``scrfd``) and embedder (``arcface``) models.
"""

from __future__ import annotations

from pathlib import Path

from .arcface import ArcFace
from .base import DetectorModel, EmbedderModel
from .packs import ModelFile, ModelPackError
from .scrfd import Scrfd

DETECTORS: dict[str, type[DetectorModel]] = {"scrfd": Scrfd}
EMBEDDERS: dict[str, type[EmbedderModel]] = {"arcface": ArcFace}


def network(weights: ModelFile) -> Path | bytes:
    """What the model class opens."""
    return weights.path


def _chosen(kinds: dict, weights: ModelFile):
    if weights.model not in kinds:
        raise ModelPackError(f"{weights.path.name}: unknown model {weights.model!r} (known: {', '.join(kinds)})")
    return kinds[weights.model]


def detector_model(weights: ModelFile, threads: int = 1) -> DetectorModel:
    return _chosen(DETECTORS, weights)(network(weights), threads)


def embedder_model(weights: ModelFile, threads: int = 1) -> EmbedderModel:
    return _chosen(EMBEDDERS, weights)(network(weights), threads)
