"""The catalog contract (index.catalog.Catalog): every backend keeps keys, galleries, images,
embeddings, the change log and staging the same way, and keeps them across a restart."""

from __future__ import annotations

import numpy as np
import pytest

from index.backend import restore_catalog
from index.catalog import Catalog
from index.errors import (
    CatalogNotEmptyError,
    GenerationConflictError,
    KeyExistsError,
    PackMismatchError,
    StagingIncompleteError,
)
from index.records import ImageRecord, NewFace, NewImage
from service.harness.synthetic import faces
from tests.contract.conftest import Storage

PACK = "buffalo_s"


def new_image(vectors: np.ndarray, name: str = "a.jpg", pack: str = PACK, digest: bytes | None = None) -> NewImage:
    faces_ = [NewFace([10.0 * i, 0.0, 10.0 * i + 8, 8.0], 0.9, vector) for i, vector in enumerate(vectors)]
    return NewImage(name, "image/jpeg", {"name": name}, "2026-12-01T00:00:00+00:00", pack, faces_, digest)


def gallery_of(catalog: Catalog, name: str = "k") -> int:
    return catalog.keys.create(name, "hash", None, "now").gallery


def two_images(catalog: Catalog, vectors: np.ndarray, split: int) -> tuple[int, ImageRecord, ImageRecord]:
    """A new gallery holding the faces before ``split`` in one image and the rest in another."""
    gid = gallery_of(catalog)
    return gid, catalog.images.add(gid, new_image(vectors[:split])), catalog.images.add(gid, new_image(vectors[split:]))


def test_a_key_owns_a_new_empty_gallery(storage: Storage) -> None:
    catalog, _ = storage.open()
    made = catalog.keys.create("alice", "scrypt$hash", 5, "now")
    assert catalog.keys.get("alice") == made and catalog.keys.get("bob") is None
    gallery = catalog.images.gallery(made.gallery)
    assert (gallery.key, gallery.images, gallery.faces, gallery.seq, gallery.pack) == ("alice", 0, 0, 0, None)
    other = catalog.keys.create("bob", "h", None, "now")
    assert other.gallery != made.gallery and set(catalog.images.galleries()) == {made.gallery, other.gallery}
    with pytest.raises(KeyExistsError):
        catalog.keys.create("alice", "other", None, "now")


def test_keys_are_updated_and_their_requests_counted_against_the_quota(storage: Storage) -> None:
    catalog, _ = storage.open()
    catalog.keys.create("k", "h", 2, "now")
    assert [catalog.keys.count_request("k", 2) for _ in range(3)] == [True, True, False]
    assert dict((r.name, used) for r, used in catalog.keys.all()) == {"k": 2}
    catalog.keys.reset_usage("k")
    assert catalog.keys.count_request("k", 2)
    revoked = catalog.keys.update("k", lambda record: setattr(record, "revoked", True))
    assert revoked.revoked and catalog.keys.get("k").revoked
    assert catalog.keys.update("nobody", lambda record: None) is None


def test_an_image_is_added_read_listed_updated_and_deleted(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    vectors = faces(3, per_identity=2).vectors
    first = catalog.images.add(gid, new_image(vectors[:2], "first.jpg"))
    second = catalog.images.add(gid, new_image(vectors[2:3], "second.jpg"))
    assert second.id > first.id and len(first.faces) == 2 and first.faces[0].id != first.faces[1].id
    assert catalog.images.get(gid, first.id) == first
    assert catalog.images.get_many(gid, [second.id, first.id, 999]) == {first.id: first, second.id: second}
    assert catalog.images.page(gid, 0, 10) == ([first, second], 2)
    assert catalog.images.page(gid, 1, 1) == ([second], 2)
    assert catalog.images.ids(gid) == [first.id, second.id]
    assert catalog.images.files() == {"first.jpg", "second.jpg"}
    face_ids = [face.id for face in first.faces]
    assert catalog.images.images_of_faces(gid, [*face_ids, 999]) == dict.fromkeys(face_ids, first.id)
    updated = catalog.images.update(gid, first.id, {"who": "ada"})
    assert updated.metadata == {"who": "ada"} and catalog.images.get(gid, first.id).metadata == {"who": "ada"}
    gallery = catalog.images.gallery(gid)
    assert (gallery.images, gallery.faces, gallery.pack, gallery.dim) == (2, 3, PACK, 512)

    deleted = catalog.images.delete(gid, [first.id, first.id, 12345])
    assert [record.id for record in deleted] == [first.id]
    assert catalog.images.get(gid, first.id) is None and catalog.images.images_of_faces(gid, face_ids) == {}
    assert catalog.images.page(gid, 0, 10) == ([second], 1)
    assert catalog.images.gallery(gid).faces == 1


def test_galleries_never_see_each_others_images(storage: Storage) -> None:
    catalog, _ = storage.open()
    mine, theirs = gallery_of(catalog, "mine"), gallery_of(catalog, "theirs")
    record = catalog.images.add(mine, new_image(faces(1).vectors[:1]))
    face = record.faces[0].id
    assert catalog.images.get(theirs, record.id) is None
    assert catalog.images.get_many(theirs, [record.id]) == {}
    assert catalog.images.update(theirs, record.id, {"x": 1}) is None
    assert catalog.images.delete(theirs, [record.id]) == []
    assert catalog.images.images_of_faces(theirs, [face]) == {}
    assert catalog.images.page(theirs, 0, 10) == ([], 0)
    assert catalog.log.snapshot(theirs).ids.tolist() == []
    assert catalog.images.get(mine, record.id).metadata == {"name": "a.jpg"}, "untouched by the other gallery"


def test_a_gallery_holds_the_embeddings_of_one_pack(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    catalog.images.add(gid, new_image(faces(1).vectors[:1]))
    with pytest.raises(PackMismatchError):
        catalog.images.add(gid, new_image(faces(1).vectors[:1], pack="other"))
    with pytest.raises(PackMismatchError):
        catalog.images.add(gid, new_image(faces(1, dim=128).vectors[:1]))
    assert catalog.images.gallery(gid).images == 1, "a refused add stores nothing"


def test_the_change_log_replays_every_add_and_remove_in_order(storage: Storage) -> None:
    catalog, _ = storage.open()
    vectors = faces(4).vectors
    gid, first, second = two_images(catalog, vectors[:5], 3)
    catalog.images.delete(gid, [first.id])
    batch = catalog.log.since(gid, 0)
    ops = [(change.seq, change.is_add, change.face) for change in batch.changes]
    added = [face.id for face in first.faces + second.faces]
    assert ops == [(i + 1, True, face) for i, face in enumerate(added)] + [
        (6 + i, False, face.id) for i, face in enumerate(first.faces)
    ]
    assert set(batch.vectors) == {face.id for face in second.faces}, "vectors of the faces still live only"
    np.testing.assert_array_equal(batch.vectors[second.faces[0].id], vectors[3])
    assert batch.first == 1 and batch.bridges(0, catalog.images.gallery(gid).seq)
    assert catalog.log.counts(gid, 3) == (2, 3)
    assert [change.seq for change in catalog.log.since(gid, 6).changes] == [7, 8]

    catalog.log.trim(gid, 5)
    trimmed = catalog.log.since(gid, 0)
    assert trimmed.first == 6 and not trimmed.bridges(0, 8), "a reader behind the trim must reload"
    assert trimmed.bridges(5, 8) and [change.seq for change in trimmed.changes] == [6, 7, 8]


def test_a_snapshot_holds_every_live_face_with_the_seq_it_reflects(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    vectors = faces(5).vectors
    records = [catalog.images.add(gid, new_image(vectors[i : i + 4])) for i in range(0, 20, 4)]
    catalog.images.delete(gid, [records[1].id])
    snapshot = catalog.log.snapshot(gid)
    live = {face.id: vectors[4 * n + i] for n, r in enumerate(records) if n != 1 for i, face in enumerate(r.faces)}
    assert sorted(snapshot.ids.tolist()) == sorted(live) and snapshot.vectors.shape == (16, 512)
    for face_id, vector in zip(snapshot.ids.tolist(), snapshot.vectors, strict=True):
        np.testing.assert_array_equal(vector, live[face_id])
    assert snapshot.gallery.seq == 24 and snapshot.gallery.faces == 16


def test_a_scan_reads_the_gallery_as_it_was_when_it_began_a_batch_at_a_time(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    vectors = faces(4).vectors
    records = [catalog.images.add(gid, new_image(vectors[i : i + 4])) for i in range(0, 12, 4)]
    with catalog.log.scan(gid, 5) as (gallery, batches):
        catalog.images.delete(gid, [records[0].id])  # writes while the scan runs are not in it
        catalog.images.add(gid, new_image(vectors[12:16]))
        read = list(batches)
    assert [len(ids) for ids, _ in read] == [5, 5, 2] and all(batch.shape == (len(ids), 512) for ids, batch in read)
    assert (gallery.seq, gallery.faces) == (12, 12)
    ids, batches_of = np.concatenate([ids for ids, _ in read]), np.concatenate([v for _, v in read])
    scanned = dict(zip(ids.tolist(), batches_of, strict=True))
    assert sorted(scanned) == [face.id for record in records for face in record.faces]
    for n, face in enumerate(face for record in records for face in record.faces):
        np.testing.assert_array_equal(scanned[face.id], vectors[n])


def test_exact_vectors_are_read_for_live_faces_only(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid, other = gallery_of(catalog), gallery_of(catalog, "other")
    vectors = faces(2).vectors
    kept, gone = catalog.images.add(gid, new_image(vectors[:2])), catalog.images.add(gid, new_image(vectors[2:4]))
    theirs = catalog.images.add(other, new_image(vectors[4:5]))
    catalog.images.delete(gid, [gone.id])
    asked = [face.id for record in (kept, gone, theirs) for face in record.faces] + [999_999]
    found = catalog.images.vectors(gid, asked)
    assert sorted(found) == [face.id for face in kept.faces] and catalog.images.vectors(gid, []) == {}
    for n, face in enumerate(kept.faces):
        np.testing.assert_array_equal(found[face.id], vectors[n])


def test_face_ids_list_the_live_faces_of_one_gallery_as_a_scan_finds_them(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid, other = gallery_of(catalog), gallery_of(catalog, "other")
    vectors = faces(3).vectors
    records = [catalog.images.add(gid, new_image(vectors[i : i + 3])) for i in range(0, 9, 3)]
    catalog.images.add(other, new_image(vectors[9:12]))
    catalog.images.delete(gid, [records[1].id])
    listed = catalog.images.face_ids(gid)
    with catalog.log.scan(gid, 4) as (_, batches):
        scanned = np.concatenate([ids for ids, _ in batches])
    assert listed.dtype == np.int64 and listed.tolist() == scanned.tolist()
    assert listed.tolist() == [face.id for n in (0, 2) for face in records[n].faces]
    assert catalog.images.face_ids(gallery_of(catalog, "empty")).tolist() == []


def test_bulk_import_digests_are_kept_with_the_image(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid, other = gallery_of(catalog), gallery_of(catalog, "other")
    record = catalog.images.add(gid, new_image(faces(1).vectors[:1], digest=b"d" * 32))
    catalog.images.mark_imported(gid, b"n" * 32)
    assert catalog.images.imported_as(gid, b"d" * 32) == record.id
    assert catalog.images.imported_as(gid, b"n" * 32) == 0, "no face in it"
    assert catalog.images.imported_as(gid, b"x" * 32) is None
    assert catalog.images.imported_as(other, b"d" * 32) is None


def test_index_generations_move_one_writer_at_a_time(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    assert catalog.log.commit_generation(gid, 0).index_generation == 1
    with pytest.raises(GenerationConflictError):
        catalog.log.commit_generation(gid, 0)
    assert catalog.images.gallery(gid).index_generation == 1


def test_staged_vectors_are_swapped_in_at_once(storage: Storage) -> None:
    catalog, _ = storage.open()
    old = faces(3).vectors
    gid, first, second = two_images(catalog, old[:4], 2)
    new = faces(3, dim=128, seed=1).vectors
    catalog.staging.stage(gid, first.id, "next", {first.faces[0].id: new[0], first.faces[1].id: new[1]})
    assert catalog.staging.staged_images(gid, "next") == {first.id}
    assert catalog.staging.staged_images(gid, "another") == set()
    staged = catalog.staging.snapshot(gid, "next")
    assert staged.missing == [second.id] and staged.ids.tolist() == [face.id for face in first.faces]
    seq = staged.gallery.seq
    with pytest.raises(StagingIncompleteError):
        catalog.staging.swap(gid, "next", 128, seq, 0)
    catalog.staging.stage(gid, second.id, "next", {second.faces[0].id: new[2]})  # its second face was lost
    late = catalog.images.add(gid, new_image(old[4:5]))
    with pytest.raises(StagingIncompleteError):
        catalog.staging.swap(gid, "next", 128, seq, 0)
    catalog.images.delete(gid, [late.id])
    with pytest.raises(GenerationConflictError):
        catalog.staging.swap(gid, "next", 128, seq, 5)
    assert catalog.images.gallery(gid).pack == PACK, "a refused swap changes nothing"

    swapped = catalog.staging.swap(gid, "next", 128, catalog.staging.snapshot(gid, "next").gallery.seq, 0)
    assert (swapped.pack, swapped.dim, swapped.faces, swapped.index_generation) == ("next", 128, 3, 1)
    snapshot = catalog.log.snapshot(gid)
    kept = [first.faces[0].id, first.faces[1].id, second.faces[0].id]
    assert sorted(snapshot.ids.tolist()) == kept and snapshot.vectors.shape == (3, 128)
    assert [face.id for face in catalog.images.get(gid, second.id).faces] == [second.faces[0].id]
    assert catalog.images.get(gid, first.id).pack == "next"
    assert catalog.log.since(gid, seq + 2).changes[-1].face == second.faces[1].id, "the lost face is logged"
    assert catalog.staging.staged_images(gid, "next") == set(), "staging is cleared"


def test_everything_survives_a_restart(storage: Storage) -> None:
    catalog, _ = storage.open()
    key = catalog.keys.create("k", "h", 10, "now")
    catalog.keys.count_request("k", 10)
    vectors = faces(2).vectors
    kept = catalog.images.add(key.gallery, new_image(vectors[:2], digest=b"z" * 32))
    gone = catalog.images.add(key.gallery, new_image(vectors[2:4]))
    catalog.images.delete(key.gallery, [gone.id])
    before = catalog.log.snapshot(key.gallery)

    catalog, _ = storage.restart()
    catalog.ping()
    assert catalog.keys.get("k") == key and dict((r.name, n) for r, n in catalog.keys.all()) == {"k": 1}
    assert catalog.images.page(key.gallery, 0, 10) == ([kept], 1)
    assert catalog.images.imported_as(key.gallery, b"z" * 32) == kept.id
    after = catalog.log.snapshot(key.gallery)
    assert after.gallery == before.gallery and after.ids.tolist() == before.ids.tolist()
    np.testing.assert_array_equal(after.vectors, before.vectors)
    assert catalog.images.add(key.gallery, new_image(vectors[4:5])).id > gone.id, "ids are never reused"


def test_a_secret_is_made_once_shared_by_every_handle_and_replaced(storage: Storage) -> None:
    catalog, _ = storage.open()
    # another replica's handle on the same catalog (LMDB allows one handle per process)
    other = catalog if storage.kind == "embedded" else storage.open(serving=False)[0]
    assert catalog.secrets.get("links") is None
    assert catalog.secrets.setdefault("links", b"\x00first") == b"\x00first"
    assert other.secrets.setdefault("links", b"second") == b"\x00first", "the secret stored first is kept"
    assert other.secrets.get("links") == b"\x00first" and other.secrets.get("other") is None
    other.secrets.replace("links", b"rotated\xff")
    assert catalog.secrets.get("links") == b"rotated\xff", "a rotation is seen at once by every handle"
    catalog, _ = storage.restart()
    assert catalog.secrets.get("links") == b"rotated\xff"


def test_a_closed_catalog_fails_its_readiness_ping(storage: Storage) -> None:
    catalog, _ = storage.open()
    catalog.ping()
    storage.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever the backend raises, ping must not pass
        catalog.ping()


def test_a_backup_copy_holds_what_was_committed_when_it_began(storage: Storage, tmp_path) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    kept = catalog.images.add(gid, new_image(faces(1).vectors[:2], "kept.jpg"))
    (tmp_path / "copy").mkdir()
    names = catalog.backup(tmp_path / "copy")
    later = catalog.images.add(gid, new_image(faces(1).vectors[2:3], "later.jpg"))
    assert names == {"kept.jpg"}
    elsewhere = storage.another(tmp_path / "restored")
    restore_catalog(elsewhere.storage, tmp_path / "copy")
    try:
        copied, _ = elsewhere.open()
        assert copied.images.page(gid, 0, 10) == ([kept], 1)
        assert copied.keys.get("k") == catalog.keys.get("k")
        snapshot = copied.log.snapshot(gid)
        assert snapshot.ids.tolist() == [face.id for face in kept.faces]
        np.testing.assert_array_equal(snapshot.vectors, faces(1).vectors[:2])
        again = copied.images.add(gid, new_image(faces(1).vectors[3:4], "again.jpg"))
        assert again.id > kept.id and min(f.id for f in again.faces) > max(f.id for f in kept.faces), "no id reused"
        assert catalog.images.get(gid, later.id) is not None, "the original goes on as it was"
    finally:
        elsewhere.close()


def test_a_backup_is_restored_into_an_empty_catalog_only(storage: Storage, tmp_path) -> None:
    catalog, _ = storage.open()
    gallery_of(catalog)
    (tmp_path / "copy").mkdir()
    catalog.backup(tmp_path / "copy")
    with pytest.raises(CatalogNotEmptyError):
        restore_catalog(storage.storage, tmp_path / "copy")
    assert [key.name for key, _ in catalog.keys.all()] == ["k"], "nothing was written"
    with pytest.raises(ValueError):
        restore_catalog(storage.another(tmp_path / "other").storage, tmp_path)  # not a backup
