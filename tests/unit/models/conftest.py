"""A pack test module names its pack once (``PACK``); these fixtures load it and its analyzer, on the
runtimes its manifest chooses or (``reference_analyzer``) every model on ONNX Runtime fp32, for the
tests that hold the decoding to another implementation's answers at float precision."""

from __future__ import annotations

import pytest

from models.analyzer import FaceAnalyzer
from models.packs import ModelPack, load_pack, with_runtime
from models.runtime import REFERENCE, RuntimeOverride


@pytest.fixture(scope="module")
def pack(request: pytest.FixtureRequest) -> ModelPack:
    return load_pack(request.module.PACK)


@pytest.fixture(scope="module")
def analyzer(pack: ModelPack) -> FaceAnalyzer:
    return FaceAnalyzer(pack)


@pytest.fixture(scope="module")
def reference_analyzer(pack: ModelPack) -> FaceAnalyzer:
    return FaceAnalyzer(with_runtime(pack, RuntimeOverride(REFERENCE, REFERENCE)))
