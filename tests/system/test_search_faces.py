"""Searching with every face of the query, and filtering stored faces by size and score.

Runs on each storage backend as tests/system/test_api.py does (the Flask client on the embedded
backend, two replicas of a cluster), with its backends.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.harness.photos import crop, package_photo, scaled
from tests.system import test_api
from tests.system.test_api import Client, refused

# The backends of the API suite, one fresh key per test.
pytest_generate_tests = test_api.pytest_generate_tests
backend = test_api.backend
api = test_api.api

T1 = "t1.jpg"  # six people


def _size(box: list[float]) -> float:
    return min(box[2] - box[0], box[3] - box[1])


def test_face_all_answers_one_list_per_query_face(api: Client) -> None:
    group = package_photo(T1)
    added = api.ok(api.add(group))
    answers = api.ok(api.search(group, face="all", top_k=1))
    assert len(answers) == len(added["faces"]) == 6
    assert all(set(answer) == {"bbox", "score", "results"} for answer in answers)
    assert sorted(a["bbox"] for a in answers) == sorted(f["bbox"] for f in added["faces"])
    sizes = [(a["bbox"][2] - a["bbox"][0]) * (a["bbox"][3] - a["bbox"][1]) for a in answers]
    assert sizes == sorted(sizes, reverse=True), "largest face first"
    for answer in answers:
        assert 0.5 <= answer["score"] <= 1
        (best,) = answer["results"]
        assert best["id"] == added["id"] and best["bbox"] == answer["bbox"], "each face finds itself"


def test_the_largest_face_stays_the_default(api: Client) -> None:
    group = package_photo(T1)
    api.ok(api.add(group))
    largest = api.ok(api.search(group, face="all"))[0]["results"]
    assert api.ok(api.search(group)) == largest == api.ok(api.search(group, face="largest"))


def test_stored_faces_are_filtered_by_size_and_detection_score(api: Client) -> None:
    group = package_photo(T1)
    big = api.ok(api.add(group))
    small = api.ok(api.add(scaled(group, 0.4)))
    largest_small = max(_size(f["bbox"]) for f in small["faces"])
    smallest_big = min(_size(f["bbox"]) for f in big["faces"])
    assert largest_small < smallest_big
    probe = crop(group, big["faces"][0]["bbox"], 2.0)
    assert {hit["id"] for hit in api.ok(api.search(probe))} == {big["id"], small["id"]}
    cut = (largest_small + smallest_big) / 2
    assert [hit["id"] for hit in api.ok(api.search(probe, min_face_size=cut))] == [big["id"]]
    lowest = min(f["score"] for f in big["faces"] + small["faces"])
    assert len(api.ok(api.search(probe, min_det_score=lowest))) == 2
    assert api.ok(api.search(probe, min_det_score=1.0)) == []
    for answer in api.ok(api.search(probe, face="all", min_face_size=cut)):
        assert all(hit["id"] == big["id"] for hit in answer["results"])


@pytest.mark.parametrize(
    "field, value",
    [
        ("face", "some"),
        ("face", "ALL"),
        ("face", 1),
        ("face", ["all"]),
        ("min_face_size", -1),
        ("min_face_size", "10"),
        ("min_face_size", True),
        ("min_det_score", 1.5),
        ("min_det_score", -0.1),
        ("min_det_score", False),
        ("min_det_score", "0.5"),
    ],
)
def test_bad_face_options_are_refused(api: Client, field: str, value: Any) -> None:
    refused(api.search(package_photo(T1), **{field: value}), 7, 400)
