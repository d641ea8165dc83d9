"""Collections and filters through the API (docs/filters.md), on the in-process app over the
embedded backend and on two cluster replicas taking turns: ``collection`` on adds, listings,
searches and moves, ``GET /collections``, ``DELETE /collections/<name>``, ``filter`` and the
creation-time bounds; every malformed filter is code 7 with a message naming the problem;
without any of them every answer is as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from index.filters import Facts, created_seconds, matches
from service.core.config import Limits
from service.core.filters import scope_of
from service.harness.photos import b64, flipped, package_photo, recompressed, scaled
from tests.system.test_api import Backend, Client, FlaskBackend, ReplicasBackend, refused

T1, TOM, YAO = "t1.jpg", "Tom_Hanks_54745.png", "yaoming.jpg"


@pytest.fixture(scope="module", params=["flask", pytest.param("replicas", marks=pytest.mark.cluster)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(request.param)
    made = (
        FlaskBackend(data_dir)
        if request.param == "flask"
        else ReplicasBackend(data_dir, request.getfixturevalue("engines"))
    )
    yield made
    made.close()


@pytest.fixture
def api(backend: Backend) -> Client:
    return Client(backend, *backend.new_key())


def photos() -> list[bytes]:
    """Twelve photos: variants of one man's portrait, of a group of six, of another man."""
    tom, group, yao = package_photo(TOM), package_photo(T1), package_photo(YAO)
    variants = [lambda p: p, flipped, lambda p: scaled(p, 0.8), lambda p: recompressed(p, 70)]
    return [vary(photo) for photo in (tom, group, yao) for vary in variants]


METADATA: list[dict[str, Any]] = [
    {"status": "active", "year": 2021, "tags": ["vip"], "customer": {"city": "Köln"}},
    {"status": "active", "year": "2022", "customer": {"city": "Paris"}},
    {"status": "closed", "year": 2023, "tags": ["vip", "blacklist"]},
    {"status": "closed", "year": "2021"},
    {"status": "active", "year": 2024, "note": None},
    {"year": 2020},
    {"status": "active", "tags": "vip", "customer": {"city": "köln"}},
    {"status": "Active", "year": 2022.0},
    {"status": "closed", "year": 2025, "customer": {"city": "Köln"}},
    {"status": "active", "year": "2023"},
    {},
    {"status": "closed", "year": 2022, "tags": []},
]
COLLECTIONS = [
    "wedding",
    "wedding",
    None,
    "gala",
    "gala",
    "wedding",
    None,
    "gala",
    "wedding",
    None,
    "gala",
    "Ünïcode ☃",
]


@pytest.fixture
def stocked(api: Client) -> tuple[Client, list[dict]]:
    added = []
    for photo, metadata, collection in zip(photos(), METADATA, COLLECTIONS, strict=True):
        body: dict[str, Any] = {"image": {"base64": b64(photo), "metadata": metadata}}
        if collection is not None:
            body["collection"] = collection
        added.append(api.ok(api.call("POST", "/images", json=body)))
    return api, added


def everything(api: Client) -> list[dict]:
    """Every image, ranked against Tom's portrait (a threshold of -1: each image answers)."""
    return api.ok(api.search(package_photo(TOM), top_k=1000, threshold=-1.0))


def passes(image: dict, fields: dict) -> bool:
    """What the filter means, from index.filters, over what the API answered about the image."""
    expr = scope_of(fields, Limits()).expr()
    return matches(
        expr, Facts(image["metadata"], image.get("collection", "default"), created_seconds(image["created_at"]))
    )


FILTERS: list[dict[str, Any]] = [
    {"filter": {"status": "active"}},
    {"filter": {"status": {"$ne": "active"}}},
    {"filter": {"year": {"$gte": 2022}}},
    {"filter": {"year": "2021"}},
    {"filter": {"tags": "vip"}},
    {"filter": {"customer.city": {"$in": ["Köln", "Paris"]}}},
    {"filter": {"note": {"$exists": True}}},
    {"filter": {"$or": [{"status": "closed"}, {"tags": {"$in": ["vip"]}}], "year": {"$lt": 2025}}},
    {"collection": "wedding"},
    {"collection": ["gala", "Ünïcode ☃"], "filter": {"status": "active"}},
    {"collection": "default"},
    {"filter": {"status": "nobody"}},
    {"collection": "no such collection"},
]


def test_a_filtered_search_answers_the_filtered_images_in_the_order_of_the_whole(stocked) -> None:
    api, added = stocked
    listed = {image["id"]: image for image in api.ok(api.call("GET", "/images?limit=100"))}
    ranked = everything(api)
    assert [hit["id"] for hit in ranked] and len(ranked) == len(added)
    for fields in FILTERS:
        found = api.ok(api.search(package_photo(TOM), top_k=5, threshold=-1.0, **fields))
        wanted = [hit["id"] for hit in ranked if passes(listed[hit["id"]], fields)][:5]
        assert [hit["id"] for hit in found] == wanted, fields
        face_all = api.ok(api.search(package_photo(T1), face="all", top_k=3, threshold=-1.0, **fields))
        for answer in face_all:
            assert all(passes(listed[hit["id"]], fields) for hit in answer["results"]), fields


def test_collections_are_listed_counted_moved_and_deleted(stocked) -> None:
    api, added = stocked
    assert "collection" not in added[2] and added[0]["collection"] == "wedding", "the default one is not named"
    collections = api.ok(api.call("GET", "/collections"))
    assert [c["name"] for c in collections] == ["default", "gala", "wedding", "Ünïcode ☃"]
    assert {c["name"]: c["images"] for c in collections} == {"default": 3, "gala": 4, "wedding": 4, "Ünïcode ☃": 1}
    held = {name or "default": 0 for name in COLLECTIONS}
    for image, name in zip(added, COLLECTIONS, strict=True):
        held[name or "default"] += len(image["faces"])
    assert {c["name"]: c["faces"] for c in collections} == held
    page = api.call("GET", "/images?collection=wedding&limit=2")
    assert [image["id"] for image in api.ok(page)] == [added[0]["id"], added[1]["id"]] and page.body["total"] == 4
    both = api.call("GET", "/images?collection=gala&collection=wedding&limit=100")
    assert both.body["total"] == 8

    moved = api.ok(api.call("PUT", f"/images/{added[2]['id']}", json={"collection": "gala"}))
    assert moved["collection"] == "gala" and moved["metadata"] == METADATA[2], "a move keeps the metadata"
    assert added[2]["id"] in [hit["id"] for hit in api.ok(api.search(package_photo(TOM), threshold=-1.0,
                                                                         collection="gala"))]  # fmt: skip
    both_ways = api.ok(api.call("PUT", f"/images/{added[3]['id']}", json={"collection": "x", "metadata": {"a": 1}}))
    assert (both_ways["collection"], both_ways["metadata"]) == ("x", {"a": 1})

    deleted = api.call("DELETE", "/collections/wedding")
    assert api.ok(deleted) is None and deleted.body["deleted"] == 4
    assert api.call("DELETE", "/collections/wedding").body["deleted"] == 0
    assert "wedding" not in [c["name"] for c in api.ok(api.call("GET", "/collections"))]
    assert api.ok(api.search(package_photo(TOM), threshold=-1.0, collection="wedding")) == []
    assert api.call("GET", f"/images/{added[0]['id']}").status == 404
    unicode = api.call("DELETE", "/collections/" + quote("Ünïcode ☃"))
    assert unicode.body["deleted"] == 1


def test_listings_filter_by_metadata_and_creation_time(stocked) -> None:
    api, _ = stocked
    listed = api.ok(api.call("GET", "/images?limit=100"))
    for fields in FILTERS:
        query = "&".join(
            f"{name}={quote(json.dumps(value) if name == 'filter' else value)}"
            for name, value in fields.items()
            if not isinstance(value, list)
        )
        answer = api.call("GET", f"/images?limit=100&{query}")
        expected = [image["id"] for image in listed if passes(image, {k: v for k, v in fields.items()
                                                                     if not isinstance(v, list)})]  # fmt: skip
        assert [image["id"] for image in api.ok(answer)] == expected and answer.body["total"] == len(expected), fields
    middle = listed[6]["created_at"]
    after = api.call("GET", f"/images?limit=100&created_after={quote(middle)}")
    assert [image["id"] for image in api.ok(after)] == [image["id"] for image in listed[6:]]
    before = api.ok(api.search(package_photo(TOM), threshold=-1.0, top_k=100, created_before=middle))
    assert {hit["id"] for hit in before} == {image["id"] for image in listed[:6]}


def test_updates_are_seen_by_the_next_filtered_search(stocked) -> None:
    api, added = stocked
    vip = {"filter": {"level": "vip"}}
    assert api.ok(api.search(package_photo(TOM), threshold=-1.0, **vip)) == []
    api.ok(api.call("PUT", f"/images/{added[5]['id']}", json={"metadata": {"level": "vip"}}))
    assert [hit["id"] for hit in api.ok(api.search(package_photo(TOM), threshold=-1.0, **vip))] == [added[5]["id"]]
    api.ok(api.call("PUT", f"/images/{added[5]['id']}", json={"metadata": {"level": "regular"}}))
    assert api.ok(api.search(package_photo(TOM), threshold=-1.0, **vip)) == []


def test_other_keys_never_show_through_a_filter(stocked, backend: Backend) -> None:
    api, added = stocked
    other = Client(backend, *backend.new_key())
    other.ok(other.add(package_photo(TOM), {"status": "active"}))
    for fields in FILTERS:
        found = other.ok(other.search(package_photo(TOM), threshold=-1.0, top_k=100, **fields))
        assert not {hit["id"] for hit in found} & {image["id"] for image in added}
    assert [c["name"] for c in other.ok(other.call("GET", "/collections"))] == ["default"]
    assert other.call("DELETE", "/collections/wedding").body["deleted"] == 0
    assert len(api.ok(api.call("GET", "/images?collection=wedding"))) == 4, "untouched by the other key"


MALFORMED: list[tuple[Any, str]] = [
    ({"status": {"$regex": "a.*"}}, "unknown operator $regex"),
    ({"$not": {"a": 1}}, "unknown operator $not"),
    ({"year": {"$gte": True}}, "$gte takes a number or a string, not a boolean"),
    ({"year": {"$gt": [1]}}, "$gt takes a number or a string, not a list"),
    ({"tags": {"$in": "vip"}}, "$in takes a list of values, not a string"),
    ({"tags": {"$in": [{"a": 1}]}}, "$in lists strings, numbers, booleans or null, not an object"),
    ({"tags": ["a", "b"]}, "a list where a value or an object of operators is needed"),
    ({"$and": {"a": 1}}, "$and takes a list of objects, not an object"),
    ({"$or": [["a"]]}, "a list where an object is needed"),
    ([{"a": 1}], "a list where an object is needed"),
    ("status", "not valid JSON"),
    ({"a": {"$exists": 1}}, "$exists takes true or false, not a number"),
    ({"customer": {"city": "Köln"}}, "dotted key (customer.city)"),
    ({"a..b": 1}, "not a key"),
    ({}, "an empty object"),
    ({"a": {}}, "an empty object"),
    ({"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"a": 1}]}]}]}]}]}]}]}, "too deep"),
    ({"a": {"$in": list(range(300))}}, "too long"),
    ({"a": "x" * 20_000}, "too long"),
    ({"a": {"$gt": float("inf")}}, "not a finite number"),
]


@pytest.mark.parametrize(("raw", "problem"), MALFORMED, ids=[problem for _, problem in MALFORMED])
def test_every_malformed_filter_is_code_7_naming_the_problem(api: Client, raw: Any, problem: str) -> None:
    body = json.dumps(raw)  # a string is sent as one: JSON text, as a query string carries it
    search = api.call("POST", "/search", data=f'{{"image": {{"url": "http://127.0.0.1:9/x.jpg"}}, "filter": {body}}}')
    refused(search, 7, 400)
    assert problem in search.body["message"], search.body["message"]
    listing = api.call("GET", f"/images?filter={quote(raw if isinstance(raw, str) else body)}")
    if listing.status == 414:  # longer than the HTTP server's request line (gunicorn's): refused before it is read
        refused(listing, 7, 414)
        return
    refused(listing, 7, 400)
    assert problem in listing.body["message"], listing.body["message"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("created_after=yesterday", "not an ISO 8601 date or time"),
        ("created_before=2024-13-01", "not an ISO 8601 date or time"),
        ("collection=" + quote(" "), "may not be empty or blank"),
        ("collection=" + "c" * 101, "at most 100 characters"),
        ("collection=" + quote("a\x01b"), "control characters"),
    ],
)
def test_bad_collections_and_times_are_code_7(api: Client, query: str, problem: str) -> None:
    answer = api.call("GET", f"/images?{query}")
    refused(answer, 7, 400)
    assert problem in answer.body["message"]


def test_bad_collections_on_writes_are_code_7(api: Client) -> None:
    added = api.ok(api.add(package_photo(TOM)))
    for bad, problem in [(7, "not a number"), ("", "blank"), (["a"], "a list")]:
        body = {"image": {"base64": b64(package_photo(TOM))}, "collection": bad}
        for answer in (api.call("POST", "/images", json=body),
                       api.call("PUT", f"/images/{added['id']}", json={"collection": bad})):  # fmt: skip
            refused(answer, 7, 400)
            assert problem in answer.body["message"], answer.body["message"]
    refused(api.call("PUT", f"/images/{added['id']}", json={}), 7, 400)
    assert api.ok(api.call("GET", "/collections")) == [{"name": "default", "images": 1, "faces": 1}]


def test_hostile_metadata_neither_fails_nor_leaks(api: Client) -> None:
    hostile = ["x" * 5000, "\x00nul", "'; DROP TABLE images; --", '"\\', "😀" * 100, "2021", "-0", "1e400"]
    added = [api.ok(api.add(package_photo(TOM), {"v": value, "n": n})) for n, value in enumerate(hostile)]
    for n, value in enumerate(hostile):
        found = api.ok(api.search(package_photo(TOM), threshold=-1.0, top_k=50, filter={"v": value}))
        assert [hit["id"] for hit in found] == [added[n]["id"]], value
        # a listing's filter travels in the URL, which the HTTP server bounds (gunicorn: 4094 bytes)
        assert api.ok(api.call("GET", "/images?filter=" + quote(json.dumps({"v": {"$gte": value[:1000]}}))))
    numeric = api.ok(api.search(package_photo(TOM), threshold=-1.0, top_k=50, filter={"v": {"$gte": 2021}}))
    assert [hit["id"] for hit in numeric] == [added[5]["id"]], '"2021" stored as a string is 2021 to a number'


def test_without_collections_or_filters_every_answer_is_as_before(api: Client) -> None:
    added = api.ok(api.add(package_photo(TOM), {"a": 1}))
    assert set(added) == {"id", "url", "thumbnail_url", "metadata", "faces", "created_at"}
    [hit] = api.ok(api.search(package_photo(TOM)))
    assert set(hit) == {"id", "url", "thumbnail_url", "metadata", "score", "bbox", "person"}  # persons: its person
    [listed] = api.ok(api.call("GET", "/images"))
    assert set(listed) == {"id", "url", "thumbnail_url", "metadata", "faces", "created_at"}
    assert set(api.ok(api.call("PUT", f"/images/{added['id']}", json={"metadata": {"b": 2}}))) == set(added)
