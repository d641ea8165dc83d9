"""The shared data sets in the tests: a test that needs a set skips, saying why, on a machine
without them. The photos themselves, and the probes made from them, are
service/harness/photos.py's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from service.harness.photos import dataset, decode


def shared_set(name: str) -> Path:
    """A data set of ../shared/datasets; the test skips, saying why, where the sets are absent."""
    try:
        return dataset(name)
    except FileNotFoundError as absent:
        pytest.skip(str(absent))


def manifest_rows(name: str) -> list[dict[str, str]]:
    with open(shared_set(name) / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def lfw_pairs(count: int) -> list[tuple[Path, Path, bool]]:
    """The first ``count`` same-person and ``count`` different-person pairs of LFW's official list."""
    folder = shared_set("lfw")
    with open(folder / "pairs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    same = [r for r in rows if r["same"] == "1"][:count]
    different = [r for r in rows if r["same"] == "0"][:count]
    return [(folder / r["path_a"], folder / r["path_b"], r["same"] == "1") for r in same + different]


def centred_crop(analyzer, path: Path) -> np.ndarray:
    """The aligned crop of the face nearest the photo's centre (an LFW photo's subject)."""
    image = decode(path.read_bytes())
    centre = np.array(image.shape[1::-1], np.float32) / 2
    face = min(
        analyzer.detector.detect(image), key=lambda d: float(np.linalg.norm((d.bbox[:2] + d.bbox[2:]) / 2 - centre))
    )
    return analyzer.embedder.align(image, face.landmarks)
