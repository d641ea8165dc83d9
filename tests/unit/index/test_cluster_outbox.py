"""The cluster's outbox beyond the contract: a change applied by one collection stays until
every collection holding the gallery applied it, a batch applied twice changes nothing, the
exclusive lock is one holder's across connections, a change counts as applied from when its
apply committed, and a rebuild refills a Milvus that lost a gallery (a restored catalog) from
the catalog."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from index.milvus import MilvusIndexes
from index.milvus.indexes import STRONG_SECONDS
from index.postgres import PostgresCatalog
from index.vectors import IndexSettings
from service.harness.synthetic import faces
from tests.cluster import Engines
from tests.contract.test_catalog import gallery_of, new_image

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(engines: Engines) -> Iterator[tuple[PostgresCatalog, MilvusIndexes]]:
    catalog = PostgresCatalog(engines.new_database())
    indexes = MilvusIndexes(catalog, engines.milvus.uri, IndexSettings())
    yield catalog, indexes
    indexes.close()
    catalog.close()


def test_applied_changes_are_trimmed_only_once_every_collection_applied_them(cluster) -> None:
    catalog, indexes = cluster
    gid = gallery_of(catalog)
    data = faces(4)
    catalog.images.add(gid, new_image(data.vectors[:8]))
    indexes.sync(gid)
    catalog.outbox.mark(gid, "another/128", 3)  # a re-embedding's collection, filled as of seq 3
    assert catalog.outbox.trim_applied(3600) == 0, "younger than the retention"
    assert catalog.outbox.trim_applied(0) == 3, "up to what the slowest collection applied"
    assert [change.seq for change in catalog.log.since(gid, 0).changes] == list(range(4, 9))
    catalog.outbox.forget(gid, "another/128")
    assert catalog.outbox.trim_applied(0) == 5
    catalog.images.add(gid, new_image(data.vectors[8:10]))
    assert indexes.status(gid).pending == 2, "the lag is reported before the status catches up"
    assert indexes.status(gid).pending == 0 and indexes.verify(gid)


def test_a_change_counts_as_applied_from_when_its_apply_commits(cluster) -> None:
    """Searches read Milvus at Bounded consistency only ``STRONG_SECONDS`` after the gallery's last
    apply; that time is when the apply wrote Milvus, however long its transaction waited before
    (for another applier's lock, for a slow Milvus), or a search could miss an acknowledged add."""
    catalog, _ = cluster
    gid = gallery_of(catalog)
    catalog.images.add(gid, new_image(faces(1).vectors[:2]))
    waited = 2.0
    with catalog.outbox.applying(gid) as applying:
        assert applying is not None
        batch = applying.next_batch(100)
        assert batch is not None and batch.changes
        time.sleep(waited)  # what a wait for the lock or a slow write of the batch takes
        applying.record(batch.collection, batch.last)
    progress = catalog.outbox.progress(gid, batch.collection)
    assert progress.pending == 0
    assert progress.applied_seconds_ago is not None and progress.applied_seconds_ago < waited / 2 < STRONG_SECONDS


def test_a_batch_applied_again_changes_nothing(cluster) -> None:
    catalog, indexes = cluster
    gid = gallery_of(catalog)
    records = [catalog.images.add(gid, new_image(faces(3, seed=n).vectors[:4])) for n in range(3)]
    catalog.images.delete(gid, [records[1].id])
    indexes.sync(gid)
    catalog.outbox.mark(gid, "buffalo_s/512", 0)  # as if the applier died before recording its batch
    indexes.sync(gid)
    assert indexes.verify(gid) and indexes.status(gid).vectors == 8


def test_the_exclusive_lock_has_one_holder_in_any_process(cluster, engines: Engines) -> None:
    catalog, indexes = cluster
    gid = gallery_of(catalog)
    elsewhere = PostgresCatalog(catalog.url)  # another process's pool: other connections
    try:
        with indexes.exclusive(gid) as held:
            assert held
            with elsewhere.outbox.exclusive(gid, wait=False) as again:
                assert not again
        with elsewhere.outbox.exclusive(gid, wait=False) as after:
            assert after, "released when the holder's block ended"
    finally:
        elsewhere.close()


def test_a_rebuild_refills_a_gallery_milvus_lost_from_the_catalog(cluster) -> None:
    catalog, indexes = cluster
    gid = gallery_of(catalog)
    data = faces(10)
    records = [catalog.images.add(gid, new_image(data.vectors[i : i + 4])) for i in range(0, 40, 4)]
    catalog.images.delete(gid, [records[0].id])
    indexes.sync(gid)
    assert indexes.rebuild_reason(gid) is None
    indexes.collection("buffalo_s", 512).drop_gallery(gid)  # a catalog restored onto an empty Milvus
    assert indexes.rebuild_reason(gid) == "Milvus holds 0 of the gallery's 36 faces"
    result = indexes.rebuild(gid, progress=lambda line: None)
    assert result is not None and result.vectors == 36 and result.seq == catalog.images.gallery(gid).seq
    assert indexes.verify(gid) and indexes.rebuild_reason(gid) is None
