"""Shared data set subsets found and recognised through a real server."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import pytest

from service.harness.live import LiveServer
from service.harness.photos import b64
from tests.photos import manifest_rows, shared_set

SHARED_SETS = ("lfw", "att-orl", "yale", "faceapi-bbt", "dlib-johns", "deepface-unit", "fr-examples")
SUBSETS = {"lfw": (40, 3), "att-orl": (10, 3), "yale": (10, 3), "dlib-johns": (5, 6)}
DETECTION_FLOOR, RECALL_FLOOR = 0.99, 0.97


def _subset(name: str) -> dict[str, list[str]]:
    """A seeded choice of people (with two photos or more) and of their photos."""
    people: dict[str, list[str]] = defaultdict(list)
    for row in manifest_rows(name):
        people[row["identity"]].append(row["path"])
    chosen = sorted(who for who, paths in people.items() if len(paths) > 1)
    count, per_person = SUBSETS.get(name, (len(chosen), None))
    rng = random.Random(7)
    return {who: sorted(people[who])[:per_person] for who in sorted(rng.sample(chosen, min(count, len(chosen))))}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = LiveServer(tmp_path_factory.mktemp("detection") / "data").start()
    yield started
    started.stop()


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED_SETS)
def test_shared_set_subset_is_found_and_recognised_through_the_server(server: LiveServer, name: str) -> None:
    folder = shared_set(name)
    key, secret = server.new_key()
    photos = found = probes = correct = 0
    for who, paths in _subset(name).items():
        for index, path in enumerate(paths):
            image = {"base64": b64((folder / path).read_bytes())}
            if index == 0:
                answer = server.call(
                    "POST", "/images", key, secret, json={"image": {**image, "metadata": {"who": who}}}
                )
            else:
                answer = server.call("POST", "/search", key, secret, json={"image": image, "top_k": 1, "threshold": -1})
            body = answer.json()
            assert body["status_code"] in (0, 3), body
            photos += 1
            found += body["status_code"] == 0
            if index and body["status_code"] == 0:
                probes += 1
                correct += bool(body["result"]) and body["result"][0]["metadata"]["who"] == who
    assert photos >= 25 and probes >= 15, (photos, probes)
    assert found / photos >= DETECTION_FLOOR, (name, found, photos)
    assert correct / probes >= RECALL_FLOOR, (name, correct, probes)
