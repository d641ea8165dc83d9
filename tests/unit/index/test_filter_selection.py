"""The embedded catalog's selection cache (index.lmdb.attributes.Selections): a repeated filter is
answered from it, and any write to the gallery's images, whichever code path makes it, is seen
by the next selection; a range over many values joins their postings exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pytest

from index.filters import DEFAULT_COLLECTION, Facts, Scope, created_seconds, matches
from index.lmdb import LmdbCatalog
from index.lmdb.attributes import Attributes, Selections
from index.lmdb.encoding import encode, u64
from index.records import IdSet, ImageRecord, NewFace, NewImage
from service.core.config import Limits
from service.core.filters import parse_filter

LIMITS = Limits()


@pytest.fixture
def catalog(tmp_path: Path):
    catalog = LmdbCatalog(tmp_path / "lmdb", 64 << 20)
    yield catalog
    catalog.close()


def image(metadata: dict[str, Any], faces: int = 2) -> NewImage:
    vector = np.ones(8, np.float32) / np.sqrt(8)
    return NewImage("x.jpg", "image/jpeg", metadata, "2026-12-01T00:00:00+00:00", "buffalo_s",
                    [NewFace([0.0, 0.0, 8.0, 8.0], 0.9, vector)] * faces, collection=DEFAULT_COLLECTION)  # fmt: skip


def add(catalog: LmdbCatalog, gid: int, metadata: dict[str, Any]) -> ImageRecord:
    return catalog.images.add(gid, image(metadata))


def ids(record: ImageRecord) -> list[int]:
    return [face.id for face in record.faces]


def scope(raw: dict[str, Any]) -> Scope:
    return Scope(where=parse_filter(raw, LIMITS))


def faces(catalog: LmdbCatalog, gid: int, raw: dict[str, Any]) -> list[int]:
    return catalog.images.select(gid, scope(raw)).ids().tolist()


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "not-indexed"])
def test_every_write_is_seen_by_the_next_selection(catalog: LmdbCatalog, indexed: bool) -> None:
    """Not indexed: the postings do not change when the metadata does, only the stamp does."""
    gid = catalog.keys.create("k", "h", None, "now").gallery
    if indexed:
        catalog.metadata.start(gid, ["status"], 32)
    first, second = (
        add(catalog, gid, {"status": "active"}),
        add(catalog, gid, {"status": "closed"}),
    )
    active = {"status": "active"}
    assert faces(catalog, gid, active) == ids(first)
    assert faces(catalog, gid, active) == ids(first) and len(catalog.images.attributes.selections.held) == 1
    catalog.images.update(gid, first.id, {"status": "closed"})
    catalog.images.update(gid, second.id, {"status": "active"})
    assert faces(catalog, gid, active) == ids(second), "moved out and in"
    third = add(catalog, gid, {"status": "active"})
    assert faces(catalog, gid, active) == ids(second) + ids(third), "added"
    catalog.images.delete(gid, [second.id])
    assert faces(catalog, gid, active) == ids(third), "deleted"

    def drop(
        txn: lmdb.Transaction,
    ) -> None:  # as persons does, through an Attributes of its own
        Attributes(catalog.env).faces_dropped(txn, gid, third, ids(third)[1:])
        txn.put(
            u64(third.id),
            encode(replace(third, faces=third.faces[:1])),
            db=catalog.env.db["images"],
        )

    catalog.env.write(drop)
    assert faces(catalog, gid, active) == ids(third)[:1], "a face dropped"


def test_values_that_python_deems_equal_are_not_confused(catalog: LmdbCatalog) -> None:
    gid = catalog.keys.create("k", "h", None, "now").gallery
    one, true = add(catalog, gid, {"flag": 1}), add(catalog, gid, {"flag": True})
    assert faces(catalog, gid, {"flag": 1}) == ids(one)
    assert faces(catalog, gid, {"flag": True}) == ids(true), "1 == True and hash(1) == hash(True) in Python"


def test_a_range_over_many_values_joins_their_postings(catalog: LmdbCatalog) -> None:
    """Hundreds of values, each in short chunks and in full bitmaps, against the reference."""
    gid = catalog.keys.create("k", "h", None, "now").gallery
    catalog.metadata.start(gid, ["tier", "tag"], 32)
    rng = np.random.default_rng(3)
    tiers = rng.integers(0, 300, 3000).tolist()
    records = [{"tier": t, "tag": "common" if t % 2 else f"t{t}"} for t in tiers]
    stored = catalog.images.add_many(gid, [image(meta, 3) for meta in records])
    for raw in ({"tier": {"$lt": 150}}, {"tier": {"$gte": 7, "$lte": 290}}, {"tag": {"$in": ["common", "t4", "t8"]}},
                {"$or": [{"tier": {"$gt": 280}}, {"tag": {"$gte": "t2"}}]}):  # fmt: skip
        expr = scope(raw).expr()
        want = sorted(
            f.id
            for r in stored
            if matches(expr, Facts(r.metadata, r.collection, created_seconds(r.created_at)))
            for f in r.faces
        )
        assert faces(catalog, gid, raw) == want, raw


def test_the_cache_keeps_to_its_budget() -> None:
    selections = Selections(most_bytes=3 * 8192)
    sets = [IdSet.of([n]) for n in range(5)]  # one chunk of 8 KiB each
    for n, ids in enumerate(sets):
        selections.put((1, b"f", str(n)), 7, ids)
    assert selections.bytes <= 3 * 8192 and len(selections.held) == 3
    assert selections.get((1, b"f", "0"), 7) is None and selections.get((1, b"f", "4"), 7) is sets[4]
    assert selections.get((1, b"f", "4"), 8) is None, "another stamp: a write happened since"
