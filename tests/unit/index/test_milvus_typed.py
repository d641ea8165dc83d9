"""Typed keys in cluster mode (``index.milvus.expression.Layout``): a scope over a key the Milvus
rows hold in typed fields selects what ``index.filters.matches`` selects, over values of every
kind a client sends (lists, numbers written as strings, null, booleans, negative zero, unicode),
and a row whose values do not fit the fields passes every scope reading that key, for the
catalog's check of each hit to decide; so does a window of creation times (the ``created``
field, NaN for an image whose ``created_at`` is not a time)."""

from __future__ import annotations

import pytest

from index.filters import Scope, created_seconds, paths
from index.milvus import MilvusIndexes
from index.milvus.expression import OVERFLOW, TYPED_BYTES, TYPED_VALUES, typed_values
from index.postgres import PostgresCatalog
from index.vectors import IndexSettings
from service.core.config import Limits
from service.core.filters import parse_filter
from tests.cluster import Engines
from tests.contract.test_catalog import gallery_of
from tests.contract.test_filters import expected, stored

pytestmark = pytest.mark.cluster

TYPED = ("v", "p.q")
LONG = "x" * (TYPED_BYTES + 1)
VALUES = [
    "active", "closed", 5, "5", 5.5, -0.0, 0, True, False, None, [1, "two", None, True], [], {"w": 1}, "é", "😀",
    "2021", " 7", 1e308, -1e308, LONG, list(range(TYPED_VALUES + 1)), "a\"b\\c", "",
]  # fmt: skip
FILTERS = [
    {"v": "active"}, {"v": 5}, {"v": "5"}, {"v": 0}, {"v": -0.0}, {"v": True}, {"v": False}, {"v": None},
    {"v": {"$gt": 4}}, {"v": {"$lte": 5}}, {"v": {"$gte": -1e308}}, {"v": {"$gte": "a"}}, {"v": {"$lt": "b"}},
    {"v": {"$gt": "é"}}, {"v": {"$ne": 5}}, {"v": {"$nin": ["active", 5]}}, {"v": {"$exists": True}},
    {"v": {"$exists": False}}, {"v": {"$in": [LONG, 1]}}, {"v": "😀"}, {"v": "a\"b\\c"}, {"v": ""},
    {"v": {"$gte": 2021, "$lt": 2022}}, {"$or": [{"v": 1}, {"u": 2}]}, {"v.w": 1}, {"p.q": 1}, {"p.q": "a"},
    {"p.q": {"$exists": False}}, {"p.q": {"$gt": 0}, "v": {"$ne": None}},
]  # fmt: skip


TIMES = ["2024-01-01T00:00:00+00:00", "2024-01-01T23:59:59.500+00:00", "2024-06-30T12:00:00+00:00", "not a time"]
DAY, START = 86_400.0, created_seconds(TIMES[0]) or 0.0
WINDOWS = [(START, START + DAY), (START + 1, None), (None, START + DAY + 0.5), (START + 0.5 * DAY, START + 400 * DAY)]


def scopes() -> list[Scope]:
    """Every filter of ``FILTERS``, every creation-time window of ``WINDOWS``, and one of each together."""
    made = [Scope(where=parse_filter(raw, Limits())) for raw in FILTERS]
    made += [Scope(created_after=after, created_before=before) for after, before in WINDOWS]
    return [*made, Scope(where=parse_filter({"v": {"$exists": True}}, Limits()), created_after=START + 1)]


def metadata_of(n: int) -> dict:
    """The ``n``th image's metadata: one of ``VALUES`` at the typed key ``v``, at ``u`` (not
    typed) a number, and a list of objects under ``p`` for the nested typed key ``p.q``."""
    value = VALUES[n % len(VALUES)]
    made: dict = {"u": n % 3}
    if n % 11 != 4:
        made["v"] = value
    if n % 2:
        made["p"] = [{"q": n % 4}, {"q": "a" if n % 3 else None}]
    return made


def test_a_typed_key_selects_what_the_reference_selects(engines: Engines) -> None:
    catalog = PostgresCatalog(engines.new_database())
    indexes = MilvusIndexes(catalog, engines.milvus.uri, IndexSettings(filter_keys=TYPED))
    try:
        gid = gallery_of(catalog)
        count = 2 * len(VALUES) + 3
        records = stored(
            catalog, gid, [metadata_of(n) for n in range(count)], created=[TIMES[n % len(TIMES)] for n in range(count)]
        )
        indexes.sync(gid)
        overflowed = {
            key: {face.id for r in records if OVERFLOW in typed_values(r.metadata, key)[0] for face in r.faces}
            for key in TYPED
        }
        assert overflowed["v"], "some rows overflow the typed fields"
        query = catalog.log.snapshot(gid).vectors[:1]
        for scope in scopes():
            maybe = set().union(*(overflowed[key] for key in paths(scope.expr()) if key in overflowed))
            _, ids = indexes.search(gid, query, 2 * count, scope)
            assert {int(i) for i in ids[0] if i >= 0} == set(expected(catalog, gid, scope)[1]) | maybe, scope
    finally:
        indexes.close()
        catalog.close()
