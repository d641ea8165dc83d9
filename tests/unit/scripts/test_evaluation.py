"""The evaluation harness on the smallest labelled set, locally and through a live server.

The floors are what ``scripts/evaluate.py`` measured on deepface-unit with buffalo_s
(every photo has a face, 300/300 pairs right, 16/16 probes found first, no stranger
answered, no enrolled person missed), lowered by about one photo's worth so that noise
in the set's few photos does not fail the test but a broken pipeline does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts.evaluation import ScoreCounts, best_threshold, stranger_rate, tenfold_accuracy
from tests.live import ROOT
from tests.photos import shared_set

sys.path.insert(0, str(ROOT / "scripts"))
import evaluate


def run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "out"
    assert evaluate.main([str(shared_set("deepface-unit")), "--out", str(out), *extra]) == 0
    [report] = json.loads((out / "report.json").read_text())["reports"]
    return report


def assert_identification_floors(identification: dict) -> None:
    assert identification["probes"] == 16
    assert identification["recall_at_1"] >= 0.93
    assert identification["recall_at_5"] >= 0.93
    assert identification["open_set_fpir"] <= 0.1
    assert identification["open_set_miss"] <= 0.15


def test_harness_reaches_the_measured_floors_on_the_smallest_set(tmp_path: Path) -> None:
    report = run(tmp_path)
    assert report["detection"]["with_face"] >= 0.96
    assert 0.96 <= report["detection"]["faces_per_photo"] <= 1.1
    verification = report["verification"]
    assert verification["pairs"] == 300
    assert verification["pair_accuracy"] >= 0.97
    assert verification["tar_at_far_0.01"] >= 0.95
    assert verification["same_mean_cosine"] >= 0.6
    assert_identification_floors(report["identification"])
    assert (tmp_path / "out" / "deepface-unit-buffalo_s.png").stat().st_size > 10_000
    assert "| deepface-unit | buffalo_s | local |" in (tmp_path / "out" / "report.md").read_text()


def test_ten_fold_accuracy_picks_the_threshold_on_the_other_folds() -> None:
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 500)
    scores = np.where(same, rng.normal(0.6, 0.1, 1000), rng.normal(0.0, 0.1, 1000))
    folds = np.arange(1000) % 10 + 1
    result = tenfold_accuracy(scores, same, folds)
    assert result.mean > 0.99 and result.std < 0.02
    assert all(0.15 < t < 0.45 for t in result.thresholds)
    assert best_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([False, False, True, True])) == pytest.approx(0.5)
    flipped = tenfold_accuracy(-scores, same, folds)  # a model that ranks backwards is caught
    assert flipped.mean < 0.6


def test_score_counts_read_thresholds_at_a_false_accept_rate() -> None:
    counts = ScoreCounts()
    counts.add(np.linspace(-0.5, 0.5, 100_001))
    assert counts.total == 100_001
    assert counts.threshold_at(0.01) == pytest.approx(0.49, abs=2e-4)
    assert counts.share_at_or_above(0.49) == pytest.approx(0.01, abs=2e-4)
    assert stranger_rate(np.full(10, 1e-3), 1000) == pytest.approx(1 - (1 - 1e-3) ** 1000)
