"""Persons through the use cases, on a real catalog and index: a grouping run, the add's own
attach, a run next to a user's edits, forgetting, and search by person.

Photos are stored with faces whose embeddings are synthetic (identities of several faces in
lookalike groups, ``tests.synthetic``), so that who is who is known and no model runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.faces import Detection, Face
from service.core.config import Settings
from service.core.errors import Conflict, FaceNotFound, PersonNotFound
from service.core.requests import FacesMove, NewPerson, Page, PersonChange
from service.core.services import Services
from service.core.views import Image
from service.harness.live import KEY
from service.harness.photos import package_photo
from service.harness.synthetic import faces as synthetic

PHOTO = package_photo("Tom_Hanks_54745.png")


def face(vector: np.ndarray, x: float = 0.0, size: float = 80.0, score: float = 0.9) -> Face:
    box = np.array([x, 0, x + size, size], np.float32)
    return Face(Detection(box, np.zeros((5, 2), np.float32), score), vector)


def store(services: Services, key, vectors: list[np.ndarray]) -> Image:
    """A photo with a face for each vector, side by side."""
    return services.gallery.store(key, PHOTO, {}, [face(v, 100.0 * n) for n, v in enumerate(vectors)], services.pack)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The synthetic faces are shaped as buffalo_s's (512-d, its calibration links them)."""
    return replace(Settings().at(tmp_path / "data"), models="buffalo_s")


@pytest.fixture
def key(services: Services):
    return services.catalog.keys.get(KEY)


def groups(services: Services, key) -> dict[int, set[int]]:
    assignments = services.catalog.grouping.assignments(key.gallery)
    found: dict[int, set[int]] = {}
    for face_id, assignment in assignments.items():
        if assignment.person is not None:
            found.setdefault(assignment.person, set()).add(face_id)
    return found


def test_a_run_groups_each_identity_and_an_add_joins_the_person_it_clearly_belongs_to(services, key) -> None:
    data = synthetic(30, per_identity=5, group=10, seed=3)
    identity_of = {}
    for n, vector in enumerate(data.vectors):  # one face a photo: identities are grouped by the run alone
        identity_of[store(services, key, [vector]).faces[0].id] = int(data.identity[n])
    assert services.catalog.grouping.state(key.gallery).pending == 150
    summary = services.group_run().run(key.gallery)
    found = groups(services, key)
    assert summary.applied is not None and len(summary.applied.created) == len(found) >= 20
    assert all(len({identity_of[f] for f in members}) == 1 for members in found.values()), "no person mixes people"
    state = services.catalog.grouping.state(key.gallery)
    assert state.pending == 0 and state.watermark == max(identity_of)
    person_of_identity = {identity_of[next(iter(members))]: person for person, members in found.items()}
    identity = next(iter(person_of_identity))
    added = store(services, key, [data.queries[identity], synthetic(1, seed=99).vectors[0]])
    assert added.faces[0].person is not None and added.faces[0].person.id == person_of_identity[identity]
    assert added.faces[1].person is None, "a stranger's face waits"
    assert services.catalog.grouping.state(key.gallery).pending == 1
    read = services.gallery.get(key, added.id)
    assert [f.person for f in read.faces] == [f.person for f in added.faces]


def test_a_run_never_undoes_a_users_edit_made_before_or_while_it_runs(services, key) -> None:
    data = synthetic(6, per_identity=6, group=3, seed=5)
    ids = [store(services, key, [vector]).faces[0].id for vector in data.vectors]
    by_identity = [ids[n * 6 : (n + 1) * 6] for n in range(6)]
    persons = services.persons
    made: list = []

    def progress(done: int, total: int) -> None:
        if not made:  # the run has read the gallery: a user names two faces meanwhile
            made.append(persons.create(key, NewPerson("First", {}, by_identity[0][:2])))

    services.group_run().run(key.gallery, progress=progress)
    first = made[0]
    assignments = services.catalog.persons.of_faces(key.gallery, ids)
    assert {f for f, a in assignments.items() if a.person == first.id} == set(by_identity[0][:2]), "as the user left it"
    taken = by_identity[1][0]
    owner = assignments[taken].person
    assert owner is not None
    persons.take_out(key, owner, [taken])
    services.group_run().run(key.gallery, full=True)
    assignments = services.catalog.persons.of_faces(key.gallery, ids)
    assert {f for f, a in assignments.items() if a.person == first.id} == set(by_identity[0]), "the rest joined it"
    assert all(assignments[f].by_user for f in by_identity[0][:2]) and persons.get(key, first.id).name == "First"
    assert assignments[taken].person != owner, "a face taken out stays out"


def test_person_edits_refuse_what_they_cannot_do(services, key) -> None:
    data = synthetic(2, per_identity=2, seed=6)
    pair = store(services, key, list(data.vectors[:2]))
    other = store(services, key, list(data.vectors[2:3]))
    persons = services.persons
    with pytest.raises(Conflict):
        persons.create(key, NewPerson("two of one photo", {}, [f.id for f in pair.faces]))
    with pytest.raises(FaceNotFound):
        persons.create(key, NewPerson("nobody", {}, [987654]))
    made = persons.create(key, NewPerson("p", {"k": 1}, [pair.faces[0].id]))
    with pytest.raises(PersonNotFound):
        persons.update(key, PersonChange(987654, "x"))
    with pytest.raises(Conflict):
        persons.move(key, FacesMove(made.id, [other.faces[0].id], True, made.id + 1000))
    moved = persons.move(key, FacesMove(made.id, [other.faces[0].id], True, None))
    assert (moved.faces, moved.images, moved.cover.image_id) == (2, 2, pair.id)
    shown, total = persons.photos_of(key, made.id, Page(0, 10))
    assert total == 2 and [p.image.id for p in shown] == [other.id, pair.id], "newest first"
    assert shown[1].face_id == pair.faces[0].id and shown[1].image.face(pair.faces[0].id).person.name == "p"
    assert persons.page(key, Page(0, 10)) == ([persons.get(key, made.id)], 1)


def test_forgetting_a_person_removes_its_faces_from_the_index_and_its_lone_photos(services, key) -> None:
    data = synthetic(2, per_identity=3, seed=8)
    alone = store(services, key, [data.vectors[0]])
    shared = store(services, key, [data.vectors[1], data.vectors[3]])
    person = services.persons.create(key, NewPerson("forget me", {}, [alone.faces[0].id, shared.faces[0].id]))
    file = services.catalog.images.get(key.gallery, alone.id).file
    forgot = services.persons.forget(key, person.id)
    assert forgot.faces == sorted([alone.faces[0].id, shared.faces[0].id]) and forgot.images == [alone.id]
    with pytest.raises(FileNotFoundError):
        services.photos.read(file)
    _, found = services.indexes.search(key.gallery, data.vectors[:2], 5)
    assert not set(found.ravel().tolist()) & set(forgot.faces), "no index answers a forgotten face"
    assert services.indexes.verify(key.gallery)
    assert [f.id for f in services.gallery.get(key, shared.id).faces] == [shared.faces[1].id]


def test_search_by_person_uses_every_face_of_each_person(services, key) -> None:
    data = synthetic(20, per_identity=4, group=5, seed=11)
    stored = [store(services, key, [vector]).faces[0].id for vector in data.vectors]
    persons = {
        n: services.persons.create(key, NewPerson(f"person {n}", {}, stored[4 * n : 4 * n + 2])).id for n in range(10)
    }
    hits = services.person_searcher.nearest(key.gallery, data.queries[3], 3, -1.0)
    assert hits[0][0] == persons[3] and len(hits) == 3 and hits[0][1] >= hits[1][1]
    assert hits[0][2] in stored[12:14], "its nearest face is one of the person's"
    assert services.person_searcher.nearest(key.gallery, data.queries[15], 3, 0.5) == [] or all(
        person not in persons.values() or person != persons.get(15) for person, _, _ in hits
    )
