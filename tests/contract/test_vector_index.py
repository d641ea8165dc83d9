"""The vector index contract (index.vectors.VectorIndexes): every backend answers what an exact
search over the catalog's live faces answers, follows every committed change, keeps
galleries apart, and comes back in step after a restart."""

from __future__ import annotations

import numpy as np
import pytest

from index.catalog import Catalog
from index.errors import IndexBusyError
from index.records import ImageRecord
from index.vectors import IndexStatus
from service.harness.synthetic import Faces, exact_top, faces
from tests.contract.conftest import Storage
from tests.contract.test_catalog import gallery_of, new_image

K = 10


def filled(catalog: Catalog, gid: int, data: Faces, per_image: int = 4) -> list[ImageRecord]:
    """The faces stored a few to an image record, as photos of several people would be."""
    return [
        catalog.images.add(gid, new_image(data.vectors[start : start + per_image]))
        for start in range(0, len(data.vectors), per_image)
    ]


def exact(catalog: Catalog, gid: int, queries: np.ndarray, k: int = K) -> list[list[int]]:
    snapshot = catalog.log.snapshot(gid)
    return exact_top(snapshot.vectors, snapshot.ids, queries, k)


def found(vectors, gid: int, queries: np.ndarray, k: int = K) -> list[list[int]]:
    _, ids = vectors.search(gid, queries, k)
    return [[int(i) for i in row if i >= 0] for row in ids]


def test_search_answers_what_exact_search_answers_on_face_like_data(storage: Storage) -> None:
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    data = faces(120, per_identity=4, group=8)
    filled(catalog, gid, data)
    vectors.sync(gid)
    assert found(vectors, gid, data.queries) == exact(catalog, gid, data.queries)
    scores, _ = vectors.search(gid, data.queries[:5], K)
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "best first"
    assert vectors.verify(gid)


def test_every_committed_change_is_in_the_next_answer(storage: Storage) -> None:
    """No sync after these writes: a search replays the change log by itself."""
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    data = faces(40)
    records = filled(catalog, gid, data)
    assert found(vectors, gid, data.queries) == exact(catalog, gid, data.queries)
    gone = records[::2]
    catalog.images.delete(gid, [record.id for record in gone])
    deleted = {face.id for record in gone for face in record.faces}
    answered = found(vectors, gid, data.vectors, k=K)
    assert not deleted & {i for row in answered for i in row}, "a deleted face is never answered"
    more = faces(10, seed=3)
    filled(catalog, gid, more)
    assert found(vectors, gid, more.queries) == exact(catalog, gid, more.queries)
    assert vectors.verify(gid)


def test_galleries_are_searched_apart(storage: Storage) -> None:
    catalog, vectors = storage.open()
    mine, theirs = gallery_of(catalog, "mine"), gallery_of(catalog, "theirs")
    data = faces(10)
    mine_records = filled(catalog, mine, data)
    filled(catalog, theirs, faces(10, seed=9))
    their_answers = {i for row in found(vectors, theirs, data.vectors) for i in row}
    assert not their_answers & {face.id for r in mine_records for face in r.faces}
    assert found(vectors, gallery_of(catalog, "empty"), data.queries[:2]) == [[], []]


def test_status_is_a_typed_value(storage: Storage) -> None:
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    before = vectors.status(gid)
    assert isinstance(before, IndexStatus) and before.vectors == 0 and before.details is None
    filled(catalog, gid, faces(5))
    after = vectors.status(gid)
    assert after.vectors == 20 and after.details is not None and after.details.dim == 512
    assert vectors.ready()


def test_the_index_comes_back_in_step_after_a_restart(storage: Storage) -> None:
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    data = faces(30)
    records = filled(catalog, gid, data)
    before = found(vectors, gid, data.queries)
    catalog, vectors = storage.restart()
    assert vectors.verify(gid) and found(vectors, gid, data.queries) == before
    storage.close()

    catalog, vectors = storage.open(serving=False)  # a script writes while no server runs
    catalog.images.delete(gid, [records[0].id])
    filled(catalog, gid, faces(5, seed=4))
    catalog, vectors = storage.restart()
    assert vectors.verify(gid), "the restarted index replayed the writes made without it"
    assert found(vectors, gid, data.queries) == exact(catalog, gid, data.queries)


def test_a_rebuild_answers_the_same(storage: Storage) -> None:
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    data = faces(50)
    filled(catalog, gid, data)
    before = found(vectors, gid, data.queries)
    result = vectors.rebuild(gid, progress=lambda line: None)
    assert result is not None and result.vectors == 200
    assert found(vectors, gid, data.queries) == before
    vectors.wait(gid)
    assert vectors.status(gid).generation == result.generation and vectors.verify(gid)


def test_staged_vectors_are_swapped_in_with_their_pack(storage: Storage) -> None:
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    records = filled(catalog, gid, faces(10))
    new = faces(10, dim=128, seed=2)
    with vectors.exclusive(gid) as held:
        assert held
        for n, record in enumerate(records):
            staged = dict(zip([face.id for face in record.faces], new.vectors[4 * n : 4 * n + 4], strict=True))
            catalog.staging.stage(gid, record.id, "next", staged)
        assert vectors.swap(gid, "next", 128)
    vectors.wait(gid)
    assert catalog.images.gallery(gid).pack == "next" and vectors.status(gid).details.dim == 128
    assert found(vectors, gid, new.queries) == exact(catalog, gid, new.queries)
    assert vectors.verify(gid)


def test_only_one_rebuild_or_reembedding_holds_a_gallery(storage: Storage) -> None:
    catalog, vectors = storage.open()
    gid = gallery_of(catalog)
    filled(catalog, gid, faces(5))
    with vectors.exclusive(gid) as held:
        assert held
        with vectors.exclusive(gid) as again:
            assert not again, "a second holder is refused at once"
        with pytest.raises(IndexBusyError):
            vectors.rebuild(gid, progress=lambda line: None)
    assert vectors.rebuild(gid, progress=lambda line: None) is not None, "free again once released"
