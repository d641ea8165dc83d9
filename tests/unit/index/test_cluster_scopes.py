"""How cluster mode sizes a filtered search: the catalog counts the images a scope's collections
and creation times admit, up to a limit, and the narrower the scope the longer Milvus's walk
(``filtered_ef``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from index.filters import Scope
from index.milvus.collection import FILTERED_EF, FULL_SHARE, MAX_EF, MIN_EF, filtered_ef
from index.postgres import PostgresCatalog
from service.core.config import Limits
from service.core.filters import parse_filter
from tests.cluster import Engines
from tests.contract.test_catalog import gallery_of
from tests.contract.test_filters import expected, indexed, stored

DAY = 86_400.0


@pytest.fixture
def catalog(engines: Engines) -> Iterator[PostgresCatalog]:
    made = PostgresCatalog(engines.new_database())
    yield made
    made.close()


def scope(where: dict | None = None, collections: tuple[str, ...] | None = None, **times: float) -> Scope:
    return Scope(collections=collections, where=parse_filter(where, Limits()) if where else None, **times)


@pytest.mark.cluster
def test_the_catalog_bounds_a_scope_by_its_collections_and_times_up_to_a_limit(catalog: PostgresCatalog) -> None:
    gid = gallery_of(catalog)
    count = 40
    times = [f"2024-01-{1 + n % 20:02d}T00:00:00+00:00" if n % 7 else "not a time" for n in range(count)]
    metadata = [{"tier": n % 4} for n in range(count)]
    stored(catalog, gid, metadata, [f"c{n % 3}" for n in range(count)], times)
    indexed(catalog, gid, ["tier"])
    start = 1_704_067_200.0  # 2024-01-01
    tier = {"tier": {"$ne": 1}}
    for placed, narrowed in [
        (scope(collections=("c1",)), scope(tier, collections=("c1",))),
        (scope(collections=("c0", "c2")), scope(tier, collections=("c0", "c2"))),
        (scope(created_after=start + 5 * DAY), scope(tier, created_after=start + 5 * DAY)),
        (
            scope(collections=("c2",), created_before=start + 10 * DAY),
            scope(tier, collections=("c2",), created_before=start + 10 * DAY),
        ),
    ]:
        images, _ = expected(catalog, gid, placed)
        assert 3 < len(images) < count
        assert catalog.images.count_upto(gid, placed, count) == len(images), placed
        assert catalog.images.count_upto(gid, placed, 3) == 3, "the count stops at its limit"
        # metadata terms admit every image: the count bounds the scope from above
        assert len(expected(catalog, gid, narrowed)[0]) <= catalog.images.count_upto(gid, narrowed, count)
    assert catalog.images.count_upto(gid, scope(tier), 25) == 25, "no collection or time: the limit"


def test_a_narrower_scope_walks_a_longer_list_up_to_the_most_milvus_takes() -> None:
    shares = [1.0, 0.5, FULL_SHARE, 0.1, 0.05, 0.02, 0.001, 0.0]
    efs = [filtered_ef(share) for share in shares]
    assert efs[:3] == [FILTERED_EF] * 3
    assert all(wider > narrower for narrower, wider in itertools.pairwise(efs[2:6])), efs
    assert efs[-2:] == [MAX_EF, MAX_EF]
    assert min(efs) > MIN_EF
