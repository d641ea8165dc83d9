"""The shared data sets in the tests: a test that needs a set skips, saying why, on a machine
without them. The photos themselves, and the probes made from them, are
service/harness/photos.py's."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from service.harness.photos import dataset


def shared_set(name: str) -> Path:
    """A data set of ../shared/datasets; the test skips, saying why, where the sets are absent."""
    try:
        return dataset(name)
    except FileNotFoundError as absent:
        pytest.skip(str(absent))


def manifest_rows(name: str) -> list[dict[str, str]]:
    with open(shared_set(name) / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))
