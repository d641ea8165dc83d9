"""The evaluation harness on the smallest labelled set, locally and through a live server.

The floors are what ``scripts/evaluate.py`` measured on deepface-unit with buffalo_s
(every photo has a face, 300/300 pairs right, 16/16 probes found first, no stranger
answered, no enrolled person missed), lowered by about one photo's worth so that noise
in the set's few photos does not fail the test but a broken pipeline does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.faces import Detection, Face
from models.packs import load_pack
from service.harness import evaluation
from service.harness.scoring import (
    ScoreCounts,
    best_threshold,
    enrolment_splits,
    open_set_miss,
    stranger_rate,
    tenfold_accuracy,
)
from tests.live import ROOT
from tests.photos import shared_set


def run(tmp_path: Path, *extra: str) -> dict:
    """scripts/evaluate.py as a command, on the smallest set; its report."""
    out = tmp_path / "out"
    command = [sys.executable, "scripts/evaluate.py", str(shared_set("deepface-unit")), "--out", str(out), *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    [report, *_] = json.loads((out / "report.json").read_text())["reports"]
    return report


def assert_identification_floors(identification: dict) -> None:
    assert identification["probes"] == 16
    assert identification["recall_at_1"] >= 0.93
    assert identification["recall_at_5"] >= 0.93
    assert identification["open_set_fpir"] <= 0.1
    assert identification["open_set_miss"] <= 0.15


@pytest.mark.parametrize("pack", ["buffalo_s", "buffalo_s_edgeface"])
def test_harness_reaches_the_measured_floors_on_the_smallest_set(tmp_path: Path, pack: str) -> None:
    report = run(tmp_path, "--pack", pack)
    assert report["pack"] == pack
    assert report["detection"]["with_face"] >= 0.96
    assert 0.96 <= report["detection"]["faces_per_photo"] <= 1.1
    verification = report["verification"]
    assert verification["pairs"] == 300
    assert verification["pair_accuracy"] >= 0.97
    assert verification["tar_at_far_0.01"] >= 0.95
    assert verification["same_mean_cosine"] >= 0.6
    assert_identification_floors(report["identification"])
    assert report["models_alone"]["splits"] == 20 and report["models_alone"]["open_set_miss"] <= 0.1
    assert (tmp_path / "out" / f"deepface-unit-{pack}.png").stat().st_size > 10_000
    assert f"| deepface-unit | {pack} | local |" in (tmp_path / "out" / "report.md").read_text()


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


def test_open_set_miss_at_one_percent_strangers_counts_wrong_unanswered_and_faceless_mates() -> None:
    rng = np.random.default_rng(4)
    identities = [f"p{i}" for i in range(60) for _ in range(3)] + [f"single{i}" for i in range(40)]
    centres = {who: rng.standard_normal(64) for who in set(identities)}
    vectors = np.stack([centres[who] + 0.3 * rng.standard_normal(64) for who in identities]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = np.ones(len(identities), bool)
    splits = enrolment_splits(identities, splits=5)
    again = enrolment_splits(identities, splits=5)
    assert all((a.gallery == b.gallery).all() for a, b in zip(splits, again, strict=True)), "the same for every pack"
    assert all(len(s.gallery) == 30 and len(s.mates) == 60 and len(s.strangers) == 30 * 3 + 40 for s in splits)
    assert all(open_set_miss(vectors, found, identities, s)[0] == 0 for s in splits)
    shuffled = vectors[rng.permutation(len(vectors))]
    assert np.mean([open_set_miss(shuffled, found, identities, s)[0] for s in splits]) > 0.8
    split = splits[0]
    found[split.mates[:6]] = False  # no face found in six of the mates' photos: missed
    assert open_set_miss(vectors, found, identities, split)[0] == pytest.approx(6 / 60)


def _faces_of(vectors: np.ndarray) -> evaluation.Embedded:
    detection = Detection(np.array([0, 0, 10, 10], np.float32), np.zeros((5, 2), np.float32), 0.9)
    return evaluation.Embedded([[Face(detection, v)] for v in vectors], 0.0, [(10, 10)] * len(vectors))


def test_one_default_table_takes_the_higher_cosine_of_everyone_and_of_a_group_of_lookalikes() -> None:
    """A group whose strangers resemble each other more than the whole set's do (as LFW's East Asian
    people among themselves) raises the default where it measures, and by its gap beyond."""
    rng = np.random.default_rng(5)
    people, per = 1500, 2
    centres = rng.standard_normal((people, 32)) + np.where(np.arange(people)[:, None] < 300, 2.0, 0.0)  # a group
    vectors = np.repeat(centres, per, axis=0) + 0.6 * rng.standard_normal((people * per, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    identities = [f"p{i // per}" for i in range(people * per)]
    data = evaluation.DataSet("synthetic", Path("."), [f"{i}.jpg" for i in range(len(identities))], identities,
                            [None] * len(identities))  # fmt: skip
    embedded = _faces_of(vectors)
    pack = load_pack("buffalo_s", check=False)
    whole = evaluation.all_pairs(data, embedded)
    indices = list(range(300 * per))
    group_data, group_faces = data.part("synthetic:group", indices), embedded.part(indices)
    group = evaluation.all_pairs(group_data, group_faces)
    calibrated = {
        name: evaluation.calibration(pack, d, e, p)
        for name, d, e, p in (("whole", data, embedded, whole), ("group", group_data, group_faces, group))
    }
    joint = evaluation.joint_calibration(pack, (whole, calibrated["whole"]), {"group": (group, calibrated["group"])})
    rows = {row["faces"]: row for row in joint["table"]}
    assert all(row["cosine"] == max(row["whole"], row["group"]["cosine"]) for row in rows.values())
    assert rows[10]["group"]["measured"] and rows[10]["cosine"] > rows[10]["whole"], "the group's strangers look alike"
    beyond = rows[10_000]
    assert not beyond["group"]["measured"]
    assert beyond["group"]["cosine"] == pytest.approx(beyond["whole"] + joint["gaps"]["group"]["gap"], abs=1e-4)
    assert joint["manifest"]["far_cosine"] == [[row["far"], row["cosine"]] for row in joint["table"]]
