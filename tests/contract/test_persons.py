"""The persons contract (index.catalog: PersonTable, PersonEdits, Grouping, JobRecords): every
backend keeps persons, their faces, a run's operations and jobs the same way, each change one
transaction that checks what it finds, across a restart."""

from __future__ import annotations

import time

import numpy as np
import pytest

from index.backend import restore_catalog
from index.catalog import Catalog
from index.errors import AssignmentConflictError, UnknownFacesError, UnknownPersonsError
from index.filters import Facts, Scope, created_seconds, matches
from index.records import (
    DONE,
    EVERY_PERSON,
    QUEUED,
    RUNNING,
    Attach,
    FaceAssignment,
    Fold,
    ImageRecord,
    NewFace,
    NewGroup,
    NewImage,
    Source,
)
from service.core.config import FilterSettings
from service.core.filters import FilterKeys
from service.core.persons import Persons, PersonSearcher
from service.core.requests import Page
from service.core.search import Thresholds
from service.harness.synthetic import faces
from tests.contract.conftest import Storage
from tests.contract.test_catalog import PACK, gallery_of, new_image
from tests.contract.test_filtered_search import PER_IMAGE, load, scopes

NOW = "2026-12-07T00:00:00+00:00"


def photos(catalog: Catalog, gid: int, count: int, per_photo: int = 2, seed: int = 0) -> list[ImageRecord]:
    """``count`` images of ``per_photo`` faces each."""
    vectors = faces(count * per_photo, per_identity=1, seed=seed).vectors
    return [
        catalog.images.add(gid, new_image(vectors[i * per_photo : (i + 1) * per_photo], f"{i}.jpg"))
        for i in range(count)
    ]


def ids(records: list[ImageRecord], which: int = 0) -> list[int]:
    """The ``which``-th face of each image."""
    return [record.faces[which].id for record in records]


def consistent(catalog: Catalog, gid: int) -> None:
    """Every face in at most one person, which lists it; counts and covers agree."""
    listed, total = catalog.persons.page(gid, 0, 1_000_000)
    assert len(listed) == total
    held: dict[int, int] = {}
    for person in listed:
        members = catalog.persons.images(gid, person.id, 0, 1_000_000)
        assert len(members) == person.faces > 0 and person.cover in {face for _, face in members}
        assert len({image for image, _ in members}) == len(members), "one face of an image per person"
        for _, face in members:
            assert face not in held, f"face {face} is in persons {held[face]} and {person.id}"
            held[face] = person.id
    assignments = catalog.grouping.assignments(gid)
    assert {face: a.person for face, a in assignments.items() if a.person is not None} == held
    assert catalog.grouping.state(gid).placed == len(held)


def test_a_person_is_made_of_faces_and_listed_named_first(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 6)
    bob = catalog.person_edits.create(gid, "bob", {"role": "x"}, ids(images[:2]), NOW)
    ada = catalog.person_edits.create(gid, "Ada", {}, ids(images[2:3]), NOW)
    group = catalog.grouping.commit(gid, [NewGroup(ids(images[3:6]))], 2, NOW).created[0]
    small = catalog.grouping.commit(gid, [NewGroup(ids(images[:2], 1))], 2, NOW).created[0]
    assert (bob.name, bob.metadata, bob.faces, bob.edited) == ("bob", {"role": "x"}, 2, True)
    assert catalog.persons.get(gid, bob.id) == bob and catalog.persons.get(gid, 999) is None
    listed, total = catalog.persons.page(gid, 0, 10)
    assert [p.id for p in listed] == [ada.id, bob.id, group, small] and total == 4, "names first, then most faces"
    assert catalog.persons.page(gid, 1, 2) == (listed[1:3], 4)
    unnamed = catalog.persons.get(gid, group)
    assert (unnamed.name, unnamed.faces, unnamed.edited) == ("", 3, False)
    assert catalog.persons.get_many(gid, [group, 999, ada.id]) == {group: unnamed, ada.id: ada}
    assert catalog.persons.images(gid, group, 0, 10) == [(r.id, r.faces[0].id) for r in reversed(images[3:6])]
    assert catalog.persons.images(gid, group, 1, 1) == [(images[4].id, images[4].faces[0].id)]
    assert catalog.persons.of_faces(gid, [images[0].faces[0].id, images[5].faces[1].id, 999]) == {
        images[0].faces[0].id: FaceAssignment(bob.id, True)
    }
    renamed = catalog.person_edits.update(gid, group, "aaron", {"seen": 1})
    assert (renamed.name, renamed.metadata, renamed.edited) == ("aaron", {"seen": 1}, True)
    assert [p.id for p in catalog.persons.page(gid, 0, 10)[0]] == [group, ada.id, bob.id, small]
    assert catalog.person_edits.update(gid, 999, "x", None) is None
    consistent(catalog, gid)


def test_a_person_holds_one_face_of_an_image(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 3)
    with pytest.raises(AssignmentConflictError):
        catalog.person_edits.create(gid, "two of one photo", {}, [f.id for f in images[0].faces], NOW)
    person = catalog.person_edits.create(gid, "p", {}, ids(images), NOW)
    with pytest.raises(AssignmentConflictError):
        catalog.person_edits.move(gid, person.id, [images[1].faces[1].id], None)
    other = catalog.person_edits.create(gid, "q", {}, [images[2].faces[1].id], NOW)
    with pytest.raises(AssignmentConflictError):
        catalog.person_edits.merge(gid, person.id, [other.id])
    assert catalog.persons.get(gid, person.id).faces == 3 and catalog.persons.get(gid, other.id).faces == 1
    assert catalog.persons.page(gid, 0, 10)[1] == 2, "a refused edit changes nothing"
    consistent(catalog, gid)


def test_faces_move_between_persons_only_from_where_the_caller_says(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 5)
    first = catalog.grouping.commit(gid, [NewGroup(ids(images[:3]))], 2, NOW).created[0]
    second = catalog.person_edits.create(gid, "second", {}, [images[3].faces[0].id], NOW)
    face = images[0].faces[0].id
    with pytest.raises(AssignmentConflictError):
        catalog.person_edits.move(gid, second.id, [face], Source(None))  # it is in ``first``, not in no person
    moved = catalog.person_edits.move(gid, second.id, [face], Source(first))
    assert moved.faces == 2 and catalog.persons.of_faces(gid, [face])[face] == FaceAssignment(second.id, True)
    assert catalog.persons.get(gid, first).edited, "a face moved out is an edit of that person too"
    with pytest.raises(AssignmentConflictError):  # a second client that saw it in ``first`` loses
        catalog.person_edits.move(gid, first, [face], Source(first))
    again = catalog.person_edits.move(gid, second.id, [face], Source(first))
    assert again.faces == 2, "already there: nothing to do"
    loose = images[4].faces[0].id
    catalog.person_edits.move(gid, second.id, [loose], Source(None))
    rest = ids(images[1:3])
    catalog.person_edits.move(gid, second.id, rest, None)
    assert catalog.persons.get(gid, first) is None, "emptied: removed"
    with pytest.raises(UnknownPersonsError):
        catalog.person_edits.move(gid, first, [face], None)
    with pytest.raises(UnknownFacesError) as unknown:
        catalog.person_edits.move(gid, second.id, [face, 987654], None)
    assert unknown.value.ids == [987654]
    consistent(catalog, gid)


def test_faces_taken_out_stay_out_of_that_person_and_a_deleted_persons_faces_out_of_every(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 4)
    person = catalog.grouping.commit(gid, [NewGroup(ids(images))], 2, NOW).created[0]
    face = images[0].faces[0].id
    with pytest.raises(AssignmentConflictError):
        catalog.person_edits.take_out(gid, person, [images[0].faces[1].id])  # not in it
    left = catalog.person_edits.take_out(gid, person, [face])
    assert left.faces == 3 and left.edited
    assert catalog.persons.of_faces(gid, [face])[face] == FaceAssignment(None, True, person)
    applied = catalog.grouping.commit(gid, [Attach(person, [face])], 2, NOW)
    assert applied.attached == 0 and applied.skipped == 1, "no run puts it back"
    regrouped = catalog.grouping.commit(gid, [NewGroup([face, images[1].faces[1].id])], 2, NOW)
    assert len(regrouped.created) == 1, "but it may be grouped with others"
    assert catalog.person_edits.delete(gid, person) and not catalog.person_edits.delete(gid, person)
    stays = images[2].faces[0].id
    assert catalog.persons.of_faces(gid, [stays])[stays] == FaceAssignment(None, True, EVERY_PERSON)
    assert catalog.grouping.commit(gid, [NewGroup(ids(images[1:4]))], 2, NOW).created == []
    assert catalog.person_edits.take_out(gid, regrouped.created[0], [face, images[1].faces[1].id]) is None
    assert catalog.persons.page(gid, 0, 10) == ([], 0)
    consistent(catalog, gid)


def test_merging_folds_persons_into_one_that_keeps_a_name(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 5)
    unnamed = catalog.grouping.commit(gid, [NewGroup(ids(images[:2]))], 2, NOW).created[0]
    named = catalog.person_edits.create(gid, "Named", {"k": 1}, ids(images[2:4]), NOW)
    other = catalog.person_edits.create(gid, "Other", {}, ids(images[4:5]), NOW)
    merged = catalog.person_edits.merge(gid, unnamed, [named.id, other.id])
    assert (merged.id, merged.name, merged.metadata, merged.faces, merged.edited) == (
        unnamed,
        "Named",
        {"k": 1},
        5,
        True,
    )
    assert catalog.persons.get_many(gid, [named.id, other.id]) == {}
    with pytest.raises(UnknownPersonsError) as unknown:
        catalog.person_edits.merge(gid, unnamed, [named.id])
    assert unknown.value.ids == [named.id]
    consistent(catalog, gid)


def test_deleting_images_takes_their_faces_out_of_persons(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    small = catalog.images.add(
        gid, NewImage("s.jpg", "image/jpeg", {}, NOW, PACK, [NewFace([0, 0, 20, 20], 0.9, faces(1).vectors[0])])
    )
    big = catalog.images.add(
        gid, NewImage("b.jpg", "image/jpeg", {}, NOW, PACK, [NewFace([0, 0, 90, 90], 0.9, faces(1).vectors[1])])
    )
    rest = photos(catalog, gid, 2, seed=3)
    person = catalog.person_edits.create(gid, "p", {}, [small.faces[0].id, big.faces[0].id], NOW)
    assert person.cover == big.faces[0].id, "the largest face shows the person"
    only = catalog.person_edits.create(gid, "only", {}, ids(rest[:1]), NOW)
    catalog.images.delete(gid, [big.id, rest[0].id])
    after = catalog.persons.get(gid, person.id)
    assert (after.faces, after.cover) == (1, small.faces[0].id)
    assert catalog.persons.get(gid, only.id) is None and catalog.persons.page(gid, 0, 10)[1] == 1
    assert catalog.grouping.assignments(gid).keys() == {small.faces[0].id}
    consistent(catalog, gid)


def test_forgetting_a_person_deletes_its_faces_and_the_images_left_empty(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    solo = photos(catalog, gid, 2, per_photo=1)
    pairs = photos(catalog, gid, 2, per_photo=2, seed=5)
    chosen = ids(solo) + ids(pairs)
    person = catalog.person_edits.create(gid, "forget me", {}, chosen, NOW)
    seq = catalog.images.gallery(gid).seq
    forgotten = catalog.person_edits.forget(gid, person.id)
    assert forgotten.faces == sorted(chosen)
    assert sorted(r.id for r in forgotten.deleted) == ids_of(solo) and forgotten.changed == ids_of(pairs)
    assert catalog.person_edits.forget(gid, person.id) is None
    assert catalog.images.get_many(gid, ids_of(solo)) == {}
    assert [[f.id for f in catalog.images.get(gid, r.id).faces] for r in pairs] == [[r.faces[1].id] for r in pairs]
    gallery = catalog.images.gallery(gid)
    assert (gallery.images, gallery.faces) == (2, 2)
    removed = [c.face for c in catalog.log.since(gid, seq).changes if not c.is_add]
    assert sorted(removed) == sorted(chosen), "logged, so every vector index drops them"
    assert not set(catalog.log.snapshot(gid).ids.tolist()) & set(chosen)
    assert catalog.images.vectors(gid, chosen) == {} and catalog.images.images_of_faces(gid, chosen) == {}
    assert catalog.persons.page(gid, 0, 10) == ([], 0)
    consistent(catalog, gid)


def ids_of(records: list[ImageRecord]) -> list[int]:
    return [record.id for record in records]


def test_a_runs_operations_apply_what_still_holds(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 8)
    user = catalog.person_edits.create(gid, "user's", {}, ids(images[:2]), NOW)
    applied = catalog.grouping.commit(
        gid,
        [
            NewGroup(ids(images[:4])),  # two of them are the user's: too few left
            NewGroup(ids(images[4:7])),
            NewGroup([images[7].faces[0].id, images[7].faces[1].id, images[6].faces[1].id]),  # two of one image
            Attach(user.id, [images[2].faces[0].id, images[2].faces[1].id, images[3].faces[0].id]),
            Attach(987654, [images[3].faces[1].id]),
        ],
        3,
        NOW,
    )
    (auto,) = applied.created
    assert applied.attached == 5 and applied.skipped == 4 + 3 + 1 + 1
    assert catalog.persons.get(gid, user.id).faces == 4, "one face of image 2 joined, not both"
    assert catalog.persons.get(gid, auto).faces == 3 and not catalog.persons.get(gid, auto).edited
    other = catalog.grouping.commit(gid, [NewGroup([images[7].faces[0].id, images[3].faces[1].id])], 2, NOW)
    folded = catalog.grouping.commit(gid, [Fold(auto, [other.created[0]]), Fold(auto, [user.id])], 2, NOW)
    assert (folded.folded, folded.skipped) == (1, 1), "a user's person is never folded"
    assert catalog.persons.get(gid, auto).faces == 5 and catalog.persons.get(gid, other.created[0]) is None
    assert catalog.grouping.commit(gid, [Fold(user.id, [auto])], 2, NOW).folded == 0, "a face of image 3 on each side"
    (more,) = catalog.grouping.commit(gid, [NewGroup([images[5].faces[1].id, images[6].faces[1].id])], 2, NOW).created
    assert catalog.grouping.commit(gid, [Fold(user.id, [more])], 2, NOW).folded == 1, "a user's person may take one in"
    assert catalog.persons.get(gid, user.id).faces == 6 and catalog.persons.get(gid, more) is None
    consistent(catalog, gid)


def test_an_add_joins_its_faces_to_the_persons_they_name_and_counts_the_rest(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 2)
    assert catalog.grouping.state(gid).pending == 4
    person = catalog.person_edits.create(gid, "p", {}, ids(images), NOW)
    vectors = faces(3, per_identity=1, seed=9).vectors
    named = [NewFace([0, 0, 50, 50], 0.9, vectors[0], person.id), NewFace([60, 0, 99, 40], 0.9, vectors[1], person.id)]
    gone = NewFace([0, 60, 30, 90], 0.8, vectors[2], 987654)
    added = catalog.images.add(gid, NewImage("n.jpg", "image/jpeg", {}, NOW, PACK, [*named, gone]))
    assignments = catalog.persons.of_faces(gid, [face.id for face in added.faces])
    assert assignments == {added.faces[0].id: FaceAssignment(person.id, False)}, "one face of an image per person"
    assert catalog.grouping.state(gid).pending == 6
    state = catalog.grouping.finish(gid, added.faces[-1].id, 5)
    assert (state.pending, state.watermark, state.placed) == (1, added.faces[-1].id, 3)
    assert catalog.grouping.due(1) == [gid] and catalog.grouping.due(2) == []
    consistent(catalog, gid)


def test_galleries_never_see_each_others_persons(storage: Storage) -> None:
    catalog, _ = storage.open()
    mine, theirs = gallery_of(catalog, "mine"), gallery_of(catalog, "theirs")
    images = photos(catalog, mine, 2)
    person = catalog.person_edits.create(mine, "mine", {}, ids(images), NOW)
    assert catalog.persons.get(theirs, person.id) is None and catalog.persons.page(theirs, 0, 10) == ([], 0)
    assert catalog.persons.of_faces(theirs, ids(images)) == {}
    assert catalog.persons.images(theirs, person.id, 0, 10) == []
    with pytest.raises(UnknownFacesError):
        catalog.person_edits.create(theirs, "stolen", {}, ids(images), NOW)
    with pytest.raises(UnknownPersonsError):
        catalog.person_edits.merge(theirs, person.id, [])
    assert catalog.person_edits.update(theirs, person.id, "x", None) is None
    assert not catalog.person_edits.delete(theirs, person.id) and catalog.person_edits.forget(theirs, person.id) is None
    assert catalog.grouping.commit(theirs, [Attach(person.id, ids(images, 1))], 1, NOW).attached == 0
    assert catalog.persons.get(mine, person.id) == person


def test_persons_survive_a_restart_and_a_backup(storage: Storage, tmp_path) -> None:
    catalog, _ = storage.open()
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 3)
    person = catalog.person_edits.create(gid, "kept", {"a": 1}, ids(images), NOW)
    catalog.person_edits.take_out(gid, person.id, ids(images[:1]))
    catalog.grouping.finish(gid, 5, 1)
    before = (catalog.persons.page(gid, 0, 10), catalog.grouping.assignments(gid), catalog.grouping.state(gid))
    (tmp_path / "copy").mkdir()
    catalog.backup(tmp_path / "copy")
    catalog, _ = storage.restart()
    assert (catalog.persons.page(gid, 0, 10), catalog.grouping.assignments(gid), catalog.grouping.state(gid)) == before
    elsewhere = storage.another(tmp_path / "restored")
    restore_catalog(elsewhere.storage, tmp_path / "copy")
    try:
        copied, _ = elsewhere.open()
        assert (copied.persons.page(gid, 0, 10), copied.grouping.assignments(gid)) == before[:2]
        made = copied.person_edits.create(gid, "new", {}, ids(images[:1]), NOW)
        assert made.id > person.id, "no person id reused"
    finally:
        elsewhere.close()


def test_jobs_are_claimed_by_one_worker_at_a_time_under_a_lease(storage: Storage) -> None:
    catalog, _ = storage.open()
    gid, other = gallery_of(catalog), gallery_of(catalog, "other")
    jobs = catalog.job_records
    job = jobs.submit(gid, "group", {"full": True}, NOW)
    assert (job.state, job.gallery, job.params) == (QUEUED, gid, {"full": True})
    assert jobs.submit(gid, "group", {}, NOW).id == job.id, "one queued or running job of a kind per gallery"
    theirs = jobs.submit(other, "group", {}, NOW)
    assert theirs.id != job.id and {j.id for j in jobs.claimable()} == {job.id, theirs.id}
    claimed = jobs.claim(job.id, "w1", 0.5)
    assert (claimed.state, claimed.worker) == (RUNNING, "w1") and jobs.claim(job.id, "w2", 10) is None
    assert jobs.report(job.id, "w1", 3, 10, 0.5) and not jobs.report(job.id, "w2", 4, 10, 10)
    assert (jobs.get(job.id).done, jobs.get(job.id).total) == (3, 10)
    time.sleep(0.6)  # w1 stopped renewing its lease
    assert job.id in {j.id for j in jobs.claimable()}
    assert jobs.claim(job.id, "w2", 10).worker == "w2" and not jobs.report(job.id, "w1", 5, 10, 10)
    assert jobs.end(job.id, "w2", DONE, None) and not jobs.end(job.id, "w2", DONE, None)
    assert jobs.get(job.id).state == DONE and jobs.get(987654) is None
    assert jobs.submit(gid, "group", {}, NOW).id != job.id, "an ended job makes room for the next"
    assert np.isfinite(jobs.get(job.id).lease_until)


def _ids_in_index_files(folder) -> set[int]:
    """Every face id the embedded backend's files hold: base files (exact or IVF) and second codes."""
    import faiss

    from index.faiss.ivf_file import ids_by_list
    from index.faiss.refine import RefineCodes

    held: set[int] = set()
    for path in folder.glob("gallery-*"):
        if path.suffix == ".faiss":
            index = faiss.read_index(str(path))
            try:
                held |= set(np.concatenate(ids_by_list(faiss.extract_index_ivf(index))).tolist())
            except RuntimeError:  # not an IVF: an exact index of ids and vectors
                held |= set(faiss.vector_to_array(faiss.downcast_index(index).id_map).tolist())
        elif path.suffix == ".codes":
            held |= set(RefineCodes.open(path).ids.tolist())
    return held


def test_a_forgotten_persons_faces_leave_no_vector_in_the_index_even_after_a_rebuild(storage: Storage) -> None:
    """Embedded: the ids are in no index file (base files and second codes, read from disk after a
    checkpoint and after a rebuild into an IVF) and the vectors' bytes in none of the files;
    cluster: Milvus holds none of them (queried by id), nor after the rebuild's compaction."""
    catalog, vectors = storage.open(ivf_threshold=400)
    gid = gallery_of(catalog)
    images = photos(catalog, gid, 150, per_photo=4)
    vectors.sync(gid)
    vectors.wait(gid)  # the rebuild that crossing the IVF threshold started: the forget comes after it
    chosen = ids(images[:12])
    forgotten_vectors = catalog.images.vectors(gid, chosen)
    person = catalog.person_edits.create(gid, "forget me", {}, chosen, NOW)
    assert catalog.person_edits.forget(gid, person.id).faces == sorted(chosen)
    vectors.sync(gid)

    def nothing_left() -> None:
        _, found = vectors.search(gid, np.stack(list(forgotten_vectors.values())), 5)
        assert not set(found.ravel().tolist()) & set(chosen), "no search answers a forgotten face"
        if storage.kind == "embedded":
            vectors.save_all()  # a checkpoint of this process's index, as a server writes every minute
            folder = storage.storage.index_dir
            assert _ids_in_index_files(folder), "the files were read"
            assert not _ids_in_index_files(folder) & set(chosen)
            files = b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())
            assert not any(np.asarray(v, "<f4").tobytes() in files for v in forgotten_vectors.values())
        else:
            collection = vectors._collection_of(catalog.images.gallery(gid))
            assert collection.present(gid, ids(images[12:])), "the others are there"
            assert collection.present(gid, chosen) == set()

    nothing_left()
    vectors.rebuild(gid, progress=lambda line: None)
    vectors.wait(gid)
    if storage.kind == "embedded":
        assert vectors.status(gid).kind == "ivf"
    catalog, vectors = storage.restart(ivf_threshold=400)
    nothing_left()
    assert vectors.verify(gid)


def test_a_persons_photos_and_search_by_person_keep_to_a_scope(storage: Storage) -> None:
    """``collection``, ``filter`` and creation times narrow a person's photos and search by person
    (the use cases over each backend): the answer is the unscoped one with the photos outside
    the scope taken out by hand (``index.filters.matches`` over the catalog's records), and
    search by person scores each person by its nearest face among the photos in the scope."""
    catalog, vectors = storage.open()
    key = catalog.keys.create("k", "hash", None, NOW)
    gid = key.gallery
    data = faces(40, per_identity=4)
    records = {r.id: r for r in load(catalog, gid, data)}  # 40 photos of 4 people each, collections, metadata
    by_vector = {n + 40 * j: r.faces[j].id for n, r in enumerate(records.values()) for j in range(PER_IMAGE)}
    for identity in range(40):
        chosen = [by_vector[v] for v in np.nonzero(data.identity == identity)[0].tolist()]
        catalog.person_edits.create(gid, f"p{identity}", {}, chosen, NOW)
    vectors.sync(gid)
    persons = Persons(catalog, vectors, None, None, None, FilterKeys(catalog.metadata, FilterSettings()))
    searcher = PersonSearcher(None, catalog, vectors, Thresholds(None), persons)
    everyone = [p.id for p in catalog.persons.page(gid, 0, 100)[0]]
    stored = catalog.images.vectors(gid, list(by_vector.values()))
    assert len(everyone) == 40
    for scope in [*scopes(), Scope(created_before=0.0), Scope(created_after=0.0, collections=("event-3",))]:
        expr = scope.expr()

        def inside(image: int, expr=expr) -> bool:
            record = records[image]
            return matches(expr, Facts(record.metadata, record.collection, created_seconds(record.created_at)))

        for person in everyone[:8]:
            shown, _ = persons.photos_of(key, person, Page(0, 100))
            expected = [(p.image.id, p.face_id) for p in shown if inside(p.image.id)]
            scoped, count = persons.photos_of(key, person, Page(0, 100, scope))
            assert [(p.image.id, p.face_id) for p in scoped] == expected and count == len(expected), scope
            assert [(p.image.id, p.face_id) for p in persons.photos_of(key, person, Page(1, 1, scope))[0]] == (
                expected[1:2]
            )
        for query in data.queries[:4]:
            best: dict[int, tuple[float, int]] = {}
            for face, person in catalog.persons.of_faces(gid, list(by_vector.values())).items():
                if inside(catalog.images.images_of_faces(gid, [face])[face]):
                    best[person.person] = max(best.get(person.person, (-2.0, 0)), (float(stored[face] @ query), face))
            expected = sorted(best.items(), key=lambda item: -item[1][0])
            found = searcher.nearest(gid, query, 40, -1.0, scope)
            assert [(person, face) for person, _, face in found] == [(p, face) for p, (_, face) in expected], scope
            assert np.allclose([score for _, score, _ in found], [score for _, (score, _) in expected], atol=1e-3)
