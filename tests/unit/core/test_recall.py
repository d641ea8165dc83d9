"""Identity search over real labelled sets: one photo per person enrolled, the rest as probes."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from service.harness.photos import DATASETS
from tests.usecases import add, find

# Floors a little under what this pipeline measured on each set (docs/benchmarks/2026-11-25-evaluation.md).
FLOORS = {"faceapi-bbt": 0.97, "dlib-johns": 0.97, "att-orl": 0.98, "yale": 0.98}


def _by_identity(name: str) -> dict[str, list[str]]:
    folder = DATASETS / name
    if not (folder / "manifest.csv").is_file():
        pytest.skip(f"{folder} is absent: the shared data sets are not on this machine")
    people: dict[str, list[str]] = defaultdict(list)
    with open(folder / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            people[row["identity"]].append(row["path"])
    return {who: sorted(paths) for who, paths in people.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_recall_at_1_through_the_service(services, name: str) -> None:
    key = services.catalog.keys.get("test-key")
    people = _by_identity(name)
    enrolled = {}
    for who, paths in people.items():
        record = add(services, key, (DATASETS / name / paths[0]).read_bytes(), {"who": who})
        enrolled[record.id] = who
    hits = total = 0
    for who, paths in people.items():
        for path in paths[1:]:
            found = find(services, key, (DATASETS / name / path).read_bytes(), top_k=1, threshold=-1.0)
            total += 1
            hits += bool(found) and enrolled[found[0].image.id] == who
    recall = hits / total
    print(f"\n{name}: recall@1 {recall:.3f} ({hits}/{total} probes, {len(people)} people enrolled)")
    assert recall >= FLOORS[name]
