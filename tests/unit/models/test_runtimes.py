"""The runtimes a pack may choose per model: OpenVINO at fp32 and bf16 beside ONNX Runtime fp32.

The real OpenVINO path runs on real faces: the same pinned ONNX bytes give embeddings as
close to ONNX Runtime's as the precision allows and find the same faces; one model shared by
several threads answers each as it answers one; bf16 runs only where the CPU reports it.
"""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.analyzer import FaceAnalyzer
from models.detector import iou
from models.embedder import normalised
from models.packs import PACKS_DIR, ModelPack, ModelPackError, load_pack, with_runtime
from models.runtime import REFERENCE, Runtime, RuntimeOverride, parse_override, precision_for
from models.session import openvino_core
from models.zoo import detector_model, embedder_model
from service.core.config import Settings
from service.harness.photos import decode
from tests.photos import centred_crop, manifest_rows, shared_set

FP32, BF16 = Runtime("openvino", "fp32"), Runtime("openvino", "bf16")
# How far each precision may move a face's embedding from ONNX Runtime fp32's (cosine): fp32 is
# the same arithmetic in another order; bf16 keeps 8 bits of mantissa through the network.
CLOSE = {FP32: 0.999, BF16: 0.99}
OVERLAP = {FP32: 0.99, BF16: 0.9}  # of a face's box with the reference's (IoU), likewise


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    """Aligned crops of the subjects of a few LFW photos, found by the reference pipeline."""
    lfw = shared_set("lfw")
    reference = FaceAnalyzer(load_pack("buffalo_s"))
    return [centred_crop(reference, lfw / row["path"]) for row in manifest_rows("lfw")[:4000:500]]


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    return decode((shared_set("groups") / "images" / "deepface_selfie-many-people.jpg").read_bytes())


def packs() -> list[ModelPack]:
    return [load_pack("buffalo_s_edgeface"), load_pack("yunet_sface")]


def cpu_has_bf16() -> bool:
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_openvino_embeds_real_faces_as_onnxruntime_does(crops: list[np.ndarray]) -> None:
    for pack in packs():
        for weights in pack.embedders:
            reference = embedder_model(replace(weights, runtime=REFERENCE))
            expected = normalised(reference.embed(crops))
            for runtime in (FP32, BF16):
                model = embedder_model(replace(weights, runtime=runtime))
                assert model.runtime.engine == "openvino" and model.dim == reference.dim
                cosines = np.sum(normalised(model.embed(crops)) * expected, axis=1)
                assert cosines.min() >= CLOSE[model.runtime], (weights.path.name, runtime, cosines)


@pytest.mark.parametrize("runtime", [FP32, BF16], ids=str)
def test_openvino_finds_the_same_faces_on_a_group_photo(group: np.ndarray, runtime: Runtime) -> None:
    for pack in packs():
        side = (pack.detector_input_size,) * 2
        models = [detector_model(replace(pack.detector, runtime=chosen)) for chosen in (REFERENCE, runtime)]
        assert models[1].runtime.engine == "openvino"
        found = [model.detect(group, side, pack.detector_score_threshold) for model in models]
        assert len(found[0]) >= 5 and len(found[1]) == len(found[0]), pack.name
        # each reference face found again: the best-overlapping box nearly the same, a like score
        for box, score in zip(found[0].boxes, found[0].scores, strict=True):
            overlaps = iou(box, found[1].boxes)
            assert overlaps.max() >= OVERLAP[runtime], (pack.name, box, found[1].boxes)
            assert abs(found[1].scores[overlaps.argmax()] - score) < 0.05, pack.name


def test_one_model_shared_by_threads_answers_each_as_it_answers_one(group: np.ndarray, crops) -> None:
    """Runs at several input shapes at once on one detector and one embedder: each thread has its
    own infer request, so no run sees another's input or output."""
    pack = with_runtime(load_pack("buffalo_s"), RuntimeOverride(BF16 if cpu_has_bf16() else FP32, FP32))
    detector, embedder = detector_model(pack.detector), embedder_model(pack.embedder)
    assert (detector.runtime.engine, embedder.runtime.engine) == ("openvino", "openvino")
    sizes = [(640, 640), (480, 480), (320, 320), (800, 608)]
    jobs = [(size, crops[i : i + 1 + i % 3]) for i, size in enumerate(sizes * 2)]

    def answer(job):
        size, faces = job
        return detector.detect(group, size, pack.detector_score_threshold).boxes, embedder.embed(faces)

    alone = [answer(job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(answer, jobs * 3))
    for (boxes, vectors), (alone_boxes, alone_vectors) in zip(together, alone * 3, strict=True):
        np.testing.assert_array_equal(boxes, alone_boxes)
        np.testing.assert_array_equal(vectors, alone_vectors)
    twin = embedder_model(pack.embedder)  # the same network again: compiled once per process, shared
    assert twin.session.compiled is embedder.session.compiled
    with ThreadPoolExecutor(4) as pool:
        both = list(pool.map(lambda job: (embedder.embed(job[1]), twin.embed(job[1])), jobs))
    for (ours, theirs), (_, alone_vectors) in zip(both, alone, strict=True):
        np.testing.assert_array_equal(ours, alone_vectors)
        np.testing.assert_array_equal(theirs, alone_vectors)


def test_bf16_only_where_the_cpu_reports_it(caplog: pytest.LogCaptureFixture) -> None:
    assert precision_for(BF16, ["FP32", "BF16", "INT8"]) == "bf16"
    with caplog.at_level(logging.WARNING, "models.runtime"):
        assert precision_for(BF16, ["FP32", "INT8"], "w600k_mbf.onnx") == "fp32"
    assert "w600k_mbf.onnx: bf16 asked for" in caplog.text
    assert precision_for(FP32, ["FP32", "BF16"]) == "fp32"
    # and the session really opened says which it got on this CPU
    pack = load_pack("buffalo_s")
    model = embedder_model(replace(pack.embedder, runtime=BF16))
    assert model.runtime == (BF16 if cpu_has_bf16() else FP32)


def test_the_operator_overrides_the_packs_choice_for_every_model_or_one_role() -> None:
    assert parse_override("onnxruntime") == RuntimeOverride(REFERENCE, REFERENCE)
    assert parse_override("openvino") == RuntimeOverride(FP32, FP32)
    assert parse_override("detector=openvino-bf16") == RuntimeOverride(BF16, None)
    for wrong in ("tensorrt", "onnxruntime-bf16", "openvino-int8", "embedder=openvino", "detector=cuda"):
        with pytest.raises(ValueError):
            parse_override(wrong)
    pack = load_pack("buffalo_s_edgeface")
    chosen = with_runtime(
        pack, Settings.from_env({"FACE_SEARCH_MODEL_RUNTIME": "embedders=openvino-bf16"}).model_runtime
    )
    assert chosen.detector.runtime == pack.detector.runtime
    assert [model.runtime for model in chosen.embedders] == [BF16, BF16]
    assert Settings.from_env({"FACE_SEARCH_MODEL_RUNTIME": "pack"}).model_runtime is None
    with pytest.raises(SystemExit, match="FACE_SEARCH_MODEL_RUNTIME"):
        Settings.from_env({"FACE_SEARCH_MODEL_RUNTIME": "gpu"})


def test_a_manifest_chooses_each_models_runtime_and_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    folder = tmp_path / "pack"
    shutil.copytree(PACKS_DIR / "buffalo_s_edgeface", folder)
    manifest = json.loads((folder / "pack.json").read_text())
    manifest["runtime"] = {"detector": "openvino-bf16", "embedders": ["openvino-fp32", "onnxruntime"]}
    (folder / "pack.json").write_text(json.dumps(manifest))
    pack = load_pack(str(folder))
    assert (pack.detector.runtime, [m.runtime for m in pack.embedders]) == (BF16, [FP32, REFERENCE])
    for wrong in ({"embedders": ["openvino"]}, {"detector": "openvino-fp8"}, {"embedder": ["openvino"]}):
        manifest["runtime"] = wrong
        (folder / "pack.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelPackError, match="not a valid pack manifest"):
            load_pack(str(folder))
