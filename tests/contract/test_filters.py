"""Collections and filters in the catalog (index.catalog: ``select``, ``page`` with a scope,
``collections``, ``update``, ``delete_collection``, ``MetadataIndex``): every backend answers
what ``index.filters.matches`` says over the stored metadata, whether the keys are indexed
or not, and follows every write."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.catalog import Catalog
from index.filters import DEFAULT_COLLECTION, Facts, Scope, created_seconds, matches
from index.records import CollectionCount, ImageRecord, NewFace, NewImage
from service.core.config import Limits
from service.core.filters import parse_filter
from service.harness.synthetic import faces
from tests.contract.conftest import Storage
from tests.contract.test_catalog import PACK, gallery_of

LIMITS = Limits()
KEYS = ["status", "year", "tags", "customer.city", "score", "flag", "note"]

# Metadata as clients send it: numbers and numbers as strings, lists, nested objects, null,
# booleans, unicode, keys some images lack.
METADATA: list[dict[str, Any]] = [
    {"status": "active", "year": 2021, "tags": ["vip", "blacklist"], "customer": {"city": "Köln"}, "score": 0.5},
    {"status": "active", "year": "2022", "tags": ["vip"], "customer": {"city": "Paris"}, "flag": True},
    {"status": "closed", "year": 2023, "tags": [], "customer": {"city": "paris"}, "score": -1, "flag": False},
    {"status": "closed", "year": "2021", "customer": [{"city": "Köln"}, {"city": "Lyon"}], "note": None},
    {"status": "Active", "year": 2024.0, "tags": "vip", "score": "7", "note": "naïve ☃"},
    {"year": "0202", "tags": ["a", ["b", "vip"]], "customer": {"city": None}, "score": 1e300},
    {"status": "active", "customer": "Berlin", "flag": "true"},
    {},
]

FILTERS: list[dict[str, Any]] = [
    {"status": "active"},
    {"status": {"$ne": "active"}},
    {"status": {"$in": ["active", "closed"]}},
    {"status": {"$nin": ["active"]}},
    {"status": {"$exists": False}},
    {"year": {"$gte": 2022}},
    {"year": {"$lt": 2022}},
    {"year": 2021},
    {"year": "2021"},
    {"year": {"$gt": "2021"}},
    {"tags": "vip"},
    {"tags": {"$nin": ["vip"]}},
    {"tags": {"$exists": True}},
    {"customer.city": "Köln"},
    {"customer.city": {"$gte": "P", "$lt": "Q"}},
    {"customer.city": None},
    {"customer": {"$exists": True}},
    {"score": {"$gt": 0}},
    {"score": {"$lte": 0.5}},
    {"flag": True},
    {"flag": {"$ne": False}},
    {"note": None},
    {"note": {"$exists": True}},
    {"$or": [{"status": "closed"}, {"tags": "vip"}]},
    {"$and": [{"status": "active"}, {"$or": [{"year": {"$gte": 2022}}, {"flag": True}]}]},
    {"status": "active", "year": {"$in": [2021, 2022]}},
    {"missing": {"$ne": 1}},
    {"missing": 1},
]


def stored(catalog: Catalog, gid: int, metadata: list[dict[str, Any]], collections: list[str] | None = None,
           created: list[str] | None = None) -> list[ImageRecord]:  # fmt: skip
    """One image of two faces per metadata, in the collections given (else the default one)."""
    vectors = faces(len(metadata), per_identity=2, seed=gid).vectors
    records = []
    for n, meta in enumerate(metadata):
        image = NewImage(
            f"{n}.jpg", "image/jpeg", meta, created[n] if created else "2026-12-01T00:00:00+00:00", PACK,
            [NewFace([0.0, 0.0, 8.0, 8.0], 0.9, v) for v in vectors[2 * n : 2 * n + 2]],
            collection=collections[n] if collections else DEFAULT_COLLECTION,
        )  # fmt: skip
        records.append(catalog.images.add(gid, image))
    return records


def expected(catalog: Catalog, gid: int, scope: Scope) -> tuple[list[int], list[int]]:
    """(image ids, face ids) the reference evaluator passes, over what the catalog holds."""
    records, _ = catalog.images.page(gid, 0, 10_000)
    expr = scope.expr()
    passed = [r for r in records if matches(expr, Facts(r.metadata, r.collection, created_seconds(r.created_at)))]
    return [r.id for r in passed], sorted(face.id for r in passed for face in r.faces)


def answered(catalog: Catalog, gid: int, scope: Scope) -> tuple[list[int], list[int]]:
    records, total = catalog.images.page(gid, 0, 10_000, scope)
    assert total == len(records)
    return [r.id for r in records], catalog.images.select(gid, scope).ids().tolist()


def indexed(catalog: Catalog, gid: int, paths: list[str]) -> None:
    for path in catalog.metadata.start(gid, paths, 32):
        catalog.metadata.build(gid, path)
    assert all(catalog.metadata.keys(gid)[path] for path in paths)


@pytest.mark.parametrize("index_keys", [True, False], ids=["indexed", "not-indexed"])
def test_a_filter_selects_what_the_reference_evaluator_selects(storage: Storage, index_keys: bool) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    stored(catalog, gid, METADATA)
    if index_keys:
        indexed(catalog, gid, [*KEYS, "missing"])
    for raw in FILTERS:
        scope = Scope(where=parse_filter(raw, LIMITS))
        assert answered(catalog, gid, scope) == expected(catalog, gid, scope), raw
    numbers_as_strings = Scope(where=parse_filter({"year": {"$gte": 2021, "$lte": 2022}}, LIMITS))
    assert len(answered(catalog, gid, numbers_as_strings)[0]) == 3, '2021, "2022" and "2021"; not "0202"'
    assert answered(catalog, gid, Scope(where=parse_filter({"status": "nobody"}, LIMITS))) == ([], [])


def test_collections_hold_each_image_once_and_answer_apart(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    names = ["wedding", "wedding", "gala", DEFAULT_COLLECTION, "gala", "wedding", "Ünïcode ☃", "gala"]
    records = stored(catalog, gid, METADATA, names)
    assert catalog.images.collections(gid) == {
        "gala": CollectionCount(3, 6), DEFAULT_COLLECTION: CollectionCount(1, 2), "wedding": CollectionCount(3, 6),
        "Ünïcode ☃": CollectionCount(1, 2),
    }  # fmt: skip
    assert [r.collection for r in records] == names and catalog.images.get(gid, records[0].id).collection == "wedding"
    both = Scope(collections=("wedding", "gala"))
    in_both = [r.id for r, name in zip(records, names, strict=True) if name in ("wedding", "gala")]
    assert answered(catalog, gid, both)[0] == in_both
    assert answered(catalog, gid, Scope(collections=("nothing",))) == ([], [])
    mixed = Scope(collections=("wedding",), where=parse_filter({"status": "active"}, LIMITS))
    assert answered(catalog, gid, mixed) == expected(catalog, gid, mixed) and answered(catalog, gid, mixed)[0]

    moved = catalog.images.update(gid, records[0].id, collection="gala")
    assert moved.collection == "gala" and moved.metadata == METADATA[0], "moving keeps the metadata"
    assert catalog.images.collections(gid)["gala"] == CollectionCount(4, 8)
    assert records[0].id in answered(catalog, gid, Scope(collections=("gala",)))[0]
    assert records[0].id not in answered(catalog, gid, Scope(collections=("wedding",)))[0]

    first = catalog.images.delete_collection(gid, "gala", 3)
    rest = catalog.images.delete_collection(gid, "gala", 3)
    assert len(first) == 3 and len(rest) == 1 and catalog.images.delete_collection(gid, "gala", 3) == []
    assert "gala" not in catalog.images.collections(gid) and catalog.images.gallery(gid).images == 4
    assert answered(catalog, gid, Scope(collections=("gala",))) == ([], [])


def test_adds_updates_and_deletes_are_in_the_next_answer(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    records = stored(catalog, gid, METADATA[:4])
    indexed(catalog, gid, ["status", "year"])
    active = Scope(where=parse_filter({"status": "active", "year": {"$gte": 2022}}, LIMITS))
    assert answered(catalog, gid, active)[0] == [records[1].id]
    catalog.images.update(gid, records[2].id, {"status": "active", "year": 2030})
    catalog.images.update(gid, records[1].id, {"status": "gone", "year": 2030})
    assert answered(catalog, gid, active)[0] == [records[2].id], "now passes / no longer passes"
    [late] = stored(catalog, gid, [{"status": "active", "year": "2031"}])
    assert answered(catalog, gid, active)[0] == [records[2].id, late.id]
    catalog.images.delete(gid, [records[2].id])
    assert answered(catalog, gid, active) == expected(catalog, gid, active) == ([late.id], [f.id for f in late.faces])


def test_a_key_indexed_while_the_gallery_is_written_ends_up_exact(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    records = stored(catalog, gid, METADATA)
    started = catalog.metadata.start(gid, ["status", "year"], 32)
    assert sorted(started) == ["status", "year"] and not catalog.metadata.keys(gid)["status"]
    scope = Scope(where=parse_filter({"status": "active"}, LIMITS))
    assert answered(catalog, gid, scope) == expected(catalog, gid, scope), "while building, the metadata says"
    catalog.images.update(gid, records[7].id, {"status": "active"})
    catalog.images.delete(gid, [records[0].id])
    stored(catalog, gid, [{"status": "active"}])
    catalog.metadata.build(gid, "status")
    catalog.metadata.build(gid, "status")  # a second build of a ready key does nothing
    assert catalog.metadata.keys(gid)["status"]
    assert answered(catalog, gid, scope) == expected(catalog, gid, scope)
    assert catalog.metadata.start(gid, ["status", "a", "b", "c"], 3) == ["a"], "at most 3 metadata keys"


def test_creation_time_windows(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    times = ["2024-01-01T00:00:00+00:00", "2024-01-01T23:59:59.500+00:00", "2024-01-02T00:00:00+00:00",
             "2024-06-30T12:00:00+00:00", "2025-01-01T00:00:00.001+00:00", "not a time"]  # fmt: skip
    records = stored(catalog, gid, [{}] * len(times), created=times)
    day = 86400.0
    start = created_seconds(times[0])
    for after, before in [
        (start, start + day),
        (start + 1, None),
        (None, start + day + 0.5),
        (start + 0.5 * day, start + 400 * day),
    ]:
        scope = Scope(created_after=after, created_before=before)
        assert answered(catalog, gid, scope) == expected(catalog, gid, scope), (after, before)
    assert answered(catalog, gid, Scope(created_after=start, created_before=start + day))[0] == [
        r.id for r in records[:2]
    ]


def test_every_filter_keeps_to_its_gallery(storage: Storage) -> None:
    catalog, _ = storage.open()
    mine, theirs = gallery_of(catalog, "mine"), gallery_of(catalog, "theirs")
    stored(catalog, mine, METADATA, ["shared"] * len(METADATA))
    their_records = stored(catalog, theirs, METADATA, ["shared"] * len(METADATA))
    indexed(catalog, mine, KEYS)
    their_faces = {face.id for r in their_records for face in r.faces}
    their_ids = {r.id for r in their_records}
    scopes = [Scope(where=parse_filter(raw, LIMITS)) for raw in FILTERS] + [Scope(collections=("shared",))]
    for scope in scopes:
        images, face_ids = answered(catalog, mine, scope)
        assert not set(images) & their_ids and not set(face_ids) & their_faces
    assert catalog.images.delete_collection(mine, "shared", 100) and catalog.images.gallery(theirs).images == 8
    assert catalog.images.update(mine, their_records[0].id, collection="x") is None


HOSTILE: list[Any] = [
    "x" * 10_000, "é" * 3_000, "\x00nul\x00", "'; DROP TABLE images; --", '"quoted" \\ back', "😀" * 200,
    "9" * 39, "1e400", "-0", "0.0", "NaN", [["deep", [["deeper", [["deepest"]]]]]], {"a": {"b": {"c": {"d": 1}}}},
]  # fmt: skip


def test_hostile_values_neither_fail_nor_leak(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid, other = gallery_of(catalog), gallery_of(catalog, "other")
    metadata = [{"v": value, "n": n} for n, value in enumerate(HOSTILE)]
    stored(catalog, gid, metadata)
    stored(catalog, other, metadata)
    indexed(catalog, gid, ["v", "v.a.b.c.d"])
    for value in HOSTILE:
        operands = [value] if isinstance(value, str) else []
        for raw in [*({"v": v} for v in operands), *({"v": {"$gte": v}} for v in operands),
                    {"v": {"$in": operands or [0]}}, {"v.a.b.c.d": 1}, {"v": 0}, {"v": {"$lt": 1e300}},
                    {"v": {"$exists": True}}]:  # fmt: skip
            scope = Scope(where=parse_filter(raw, LIMITS))
            assert answered(catalog, gid, scope) == expected(catalog, gid, scope), raw


@pytest.fixture
def population(storage: Storage) -> tuple[Catalog, int]:
    """One gallery of random metadata over a small vocabulary, half its keys indexed."""
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    rng = np.random.default_rng(7)
    vocabulary: list[Any] = ["a", "b", "B", "2021", "2021.5", 2021, 2022.5, -3, 0, True, False, None, "", "ß"]
    metadata = []
    for _ in range(60):
        meta: dict[str, Any] = {}
        for key in ("k1", "k2", "k3", "k4"):
            draw = rng.random()
            if draw < 0.2:
                continue
            if draw < 0.35:
                meta[key] = [vocabulary[i] for i in rng.choice(len(vocabulary), size=rng.integers(0, 3))]
            elif draw < 0.45:
                meta[key] = {"in": vocabulary[rng.integers(len(vocabulary))]}
            else:
                meta[key] = vocabulary[rng.integers(len(vocabulary))]
        metadata.append(meta)
    stored(catalog, gid, metadata, [["c1", "c2", "c3"][n % 3] for n in range(60)])
    indexed(catalog, gid, ["k1", "k2", "k1.in"])
    return catalog, gid


SCALARS = st.sampled_from(["a", "b", "2021", "", "ß", 2021, 2021.5, -3, 0, 1, True, False, None])
ORDERED = st.sampled_from(["a", "B", "2021", "", 2021, 2022, -3, 0])
PATHS = st.sampled_from(["k1", "k2", "k3", "k4", "k1.in", "k3.in", "k5"])
CONDITIONS = st.one_of(
    SCALARS,
    st.fixed_dictionaries({}, optional={op: SCALARS for op in ("$eq", "$ne")}).filter(bool),
    st.fixed_dictionaries({}, optional={op: ORDERED for op in ("$gt", "$gte", "$lt", "$lte")}).filter(bool),
    st.fixed_dictionaries({"$in": st.lists(SCALARS, max_size=3)}),
    st.fixed_dictionaries({"$nin": st.lists(SCALARS, max_size=3)}),
    st.fixed_dictionaries({"$exists": st.booleans()}),
)
BLOCKS = st.recursive(
    st.dictionaries(PATHS, CONDITIONS, min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.fixed_dictionaries({"$and": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"$or": st.lists(inner, min_size=1, max_size=3)}),
    ),
    max_leaves=6,
)


@given(raw=BLOCKS, collections=st.one_of(st.none(), st.lists(st.sampled_from(["c1", "c2", "c3", "c9"]), min_size=1)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_random_filter_selects_what_python_evaluates(population: tuple[Catalog, int], raw, collections) -> None:
    catalog, gid = population
    scope = Scope(collections=tuple(collections) if collections else None, where=parse_filter(raw, LIMITS))
    assert answered(catalog, gid, scope) == expected(catalog, gid, scope), raw
