"""A pack test module names its pack once (``PACK``); these fixtures load it and its analyzer."""

from __future__ import annotations

import pytest

from models.analyzer import FaceAnalyzer
from models.packs import ModelPack, load_pack


@pytest.fixture(scope="module")
def pack(request: pytest.FixtureRequest) -> ModelPack:
    return load_pack(request.module.PACK)


@pytest.fixture(scope="module")
def analyzer(pack: ModelPack) -> FaceAnalyzer:
    return FaceAnalyzer(pack)
