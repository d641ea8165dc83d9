"""Identity search over real labelled sets: one photo per person enrolled, the rest as probes, with
buffalo_s and with the fused buffalo_s_edgeface."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace

import pytest

from service.core.config import Settings
from service.core.services import Services, build_services
from service.harness.photos import DATASETS
from tests.usecases import add, find

PACKS = ("buffalo_s", "buffalo_s_edgeface")

# Floors a little under what both packs measured on each set: recall@1 1.000 (docs/accuracy.md).
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


@pytest.fixture(scope="module", params=PACKS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One service per pack for every set (its models loaded once)."""
    settings = replace(Settings().at(tmp_path_factory.mktemp("recall")), models=request.param)
    with build_services(settings, serving=True) as built:
        yield built


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_recall_at_1_through_the_service(served: Services, name: str) -> None:
    services = served
    key = services.keys.create().record
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
    print(f"\n{name} ({services.pack.name}): recall@1 {recall:.3f} ({hits}/{total} probes, {len(people)} people)")
    assert recall >= FLOORS[name]
