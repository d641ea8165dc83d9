"""Persons: listing and reading them, a user's edits, forgetting one, face thumbnails, and
searching a gallery by person.

Every edit is one catalog transaction that checks what it changes as it finds it (the rules:
``index.persons``), so two edits racing for one face are decided by whichever commits first;
the other is refused (``Conflict``) and changes nothing. Forgetting a person deletes its faces
everywhere they are kept: the catalog's records and vectors, every vector index (through the
change log), and the photos left with no face.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from index.catalog import Catalog, PersonTable
from index.errors import AssignmentConflictError, UnknownFacesError, UnknownPersonsError
from index.filters import EVERYTHING, Scope
from index.records import ImageRecord, KeyRecord, PersonRecord, Source
from index.vectors import VectorIndexes

from .errors import Conflict, FaceNotFound, NoFace, PersonNotFound, writing
from .filters import FilterKeys
from .images import FaceReader, Gallery, ImageAdder
from .keys import now
from .photos import PhotoStore
from .requests import AddImage, FacesMove, NewPerson, Page, PersonChange, PersonSearch
from .search import Hits, Thresholds, admitted_faces, nearest_groups
from .views import Cover, Image, Person, PersonRef

log = logging.getLogger(__name__)


class PersonNames:
    """The person each face is in, to name it beside the face (image answers, search hits)."""

    def __init__(self, persons: PersonTable) -> None:
        self.persons = persons

    def of_faces(self, gid: int, face_ids: list[int]) -> dict[int, PersonRef]:
        assignments = self.persons.of_faces(gid, face_ids)
        wanted = sorted({a.person for a in assignments.values() if a.person is not None})
        found = self.persons.get_many(gid, wanted) if wanted else {}
        return {
            face: PersonRef(a.person, found[a.person].name)
            for face, a in assignments.items()
            if a.person is not None and a.person in found
        }


@contextmanager
def editing() -> Iterator[None]:
    """A person edit's refusals, as the use cases' own errors (and storage failures, as a write's)."""
    try:
        with writing():
            yield
    except UnknownPersonsError as exc:
        raise PersonNotFound(str(exc.args[0]) if exc.args else "no such person") from exc
    except UnknownFacesError as exc:
        raise FaceNotFound(f"{exc.args[0]} in this gallery") from exc
    except AssignmentConflictError as exc:
        raise Conflict(str(exc)) from exc


@dataclass(frozen=True)
class Forgot:
    """What forgetting a person removed."""

    faces: list[int]
    images: list[int]  # the images left with no face, deleted whole


@dataclass(frozen=True)
class PersonPhoto:
    """One photo of a person: the image, and the person's face in it."""

    image: Image
    face_id: int


class Persons:
    """A key's persons: read, made, changed, merged, split, deleted and forgotten."""

    def __init__(
        self,
        catalog: Catalog,
        indexes: VectorIndexes,
        photos: PhotoStore,
        gallery: Gallery,
        adder: ImageAdder,
        keys: FilterKeys,
    ) -> None:
        self.catalog, self.indexes, self.photos = catalog, indexes, photos
        self.gallery, self.adder, self.keys = gallery, adder, keys

    # -- reading ------------------------------------------------------------------------------

    def placed(self, gid: int, face_ids: list[int]) -> dict[int, Cover]:
        """Each face's photo and box."""
        images = self.catalog.images.images_of_faces(gid, face_ids)
        found = self.catalog.images.get_many(gid, sorted(set(images.values())))
        return {
            face: Cover(image, face, found[image].face(face).bbox) for face, image in images.items() if image in found
        }

    def views(self, gid: int, records: list[PersonRecord]) -> list[Person]:
        """The persons with their covers placed in their photos."""
        placed = self.placed(gid, [record.cover for record in records if record.cover is not None])
        return [Person.of(record, placed.get(record.cover or 0)) for record in records]

    def _record(self, gid: int, person_id: int) -> PersonRecord:
        found = self.catalog.persons.get(gid, person_id)
        if found is None:
            raise PersonNotFound(f"no person with id {person_id}")
        return found

    def page(self, key: KeyRecord, request: Page) -> tuple[list[Person], int]:
        gid = key.gallery
        records, total = self.catalog.persons.page(gid, request.offset, request.limit)
        return self.views(gid, records), total

    def get(self, key: KeyRecord, person_id: int) -> Person:
        gid = key.gallery
        return self.views(gid, [self._record(gid, person_id)])[0]

    def photos_of(self, key: KeyRecord, person_id: int, request: Page) -> tuple[list[PersonPhoto], int]:
        """The person's photos in the request's scope, newest first, each with the person's face
        in it; and how many the scope holds. A scope is resolved as a scoped search's (the
        catalog's selection of the gallery's faces in it), over every photo of the person."""
        gid = key.gallery
        person = Person.of(self._record(gid, person_id), None)
        scope = request.scope
        if scope.everything:
            rows = self.catalog.persons.images(gid, person_id, request.offset, request.limit)
            total = person.faces
        else:
            self.keys.used(gid, scope)
            rows = self.catalog.persons.images(gid, person_id, 0, person.faces)
            inside = self.catalog.images.select(gid, scope).contains(np.array([face for _, face in rows], np.int64))
            rows = [row for row, kept in zip(rows, inside.tolist(), strict=True) if kept]
            total, rows = len(rows), rows[request.offset : request.offset + request.limit]
        records = self.catalog.images.get_many(gid, [image for image, _ in rows])
        names = PersonNames(self.catalog.persons).of_faces(gid, [f.id for r in records.values() for f in r.faces])
        shown = [PersonPhoto(Image.of(records[image], names), face) for image, face in rows if image in records]
        return shown, total

    # -- changing -----------------------------------------------------------------------------

    def create(self, key: KeyRecord, request: NewPerson) -> Person:
        """A named person of the given faces, or of the largest face of a photo, which is added
        to the gallery first (as ``POST /images`` adds it)."""
        gid = key.gallery
        face_ids = request.face_ids
        if request.photo is not None:
            added = self.adder.add(key, AddImage(request.photo))
            face_ids = [max(added.faces, key=lambda face: _area(face.bbox)).id]
        with editing():
            made = self.catalog.person_edits.create(gid, request.name, request.metadata, face_ids, now())
        return self.views(gid, [made])[0]

    def update(self, key: KeyRecord, request: PersonChange) -> Person:
        gid = key.gallery
        with editing():
            changed = self.catalog.person_edits.update(gid, request.person_id, request.name, request.metadata)
        if changed is None:
            raise PersonNotFound(f"no person with id {request.person_id}")
        return self.views(gid, [changed])[0]

    def delete(self, key: KeyRecord, person_id: int) -> None:
        """The person goes; its faces stay, in no person (no run groups them again)."""
        gid = key.gallery
        with editing():
            if not self.catalog.person_edits.delete(gid, person_id):
                raise PersonNotFound(f"no person with id {person_id}")

    def forget(self, key: KeyRecord, person_id: int) -> Forgot:
        """Delete the person's faces from the catalog and from every vector index, and the
        photos left with no face: a request to delete someone's biometric data."""
        gid = key.gallery
        with editing():
            forgotten = self.catalog.person_edits.forget(gid, person_id)
        if forgotten is None:
            raise PersonNotFound(f"no person with id {person_id}")
        self.indexes.sync(gid)
        for record in forgotten.deleted:
            self.photos.delete(record.file)
        return Forgot(forgotten.faces, [record.id for record in forgotten.deleted])

    def merge(self, key: KeyRecord, into: int, person_ids: list[int]) -> Person:
        gid = key.gallery
        with editing():
            merged = self.catalog.person_edits.merge(gid, into, person_ids)
        return self.views(gid, [merged])[0]

    def move(self, key: KeyRecord, request: FacesMove) -> Person:
        gid = key.gallery
        with editing():
            source = Source(request.source) if request.checked else None
            moved = self.catalog.person_edits.move(gid, request.person_id, request.face_ids, source)
        return self.views(gid, [moved])[0]

    def take_out(self, key: KeyRecord, person_id: int, face_ids: list[int]) -> Person | None:
        """The faces leave the person (no run puts them back); None when that left it empty."""
        gid = key.gallery
        with editing():
            left = self.catalog.person_edits.take_out(gid, person_id, face_ids)
        return None if left is None else self.views(gid, [left])[0]


def _area(bbox: list[float]) -> float:
    x1, y1, x2, y2 = bbox
    return (x2 - x1) * (y2 - y1)


# -- searching by person ------------------------------------------------------------------


def person_score(hits: Hits) -> float:
    """A person's score for a query: the cosine of its face nearest the query."""
    return hits[0][0]


@dataclass(frozen=True)
class PersonMatch:
    person: Person
    score: float
    nearest: Cover  # the person's face nearest the query


class PersonSearcher:
    """``POST /persons/search``: the persons whose faces the query's largest face matches."""

    def __init__(
        self, reader: FaceReader, catalog: Catalog, indexes: VectorIndexes, thresholds: Thresholds, persons: Persons
    ) -> None:
        self.reader, self.catalog, self.indexes = reader, catalog, indexes
        self.thresholds, self.persons = thresholds, persons

    def default_threshold(self, gid: int) -> float:
        """Calibrated as a search's, for the faces a stranger's query can match: those in persons."""
        pack = self.reader.pack_for(self.catalog.images.gallery(gid).pack)
        return self.thresholds.for_faces(pack, self.catalog.grouping.state(gid).placed)

    def nearest(
        self, gid: int, query: np.ndarray, top_k: int, threshold: float, scope: Scope = EVERYTHING
    ) -> list[tuple[int, float, int]]:
        """(person id, score, the person's face nearest the query), best first, by the faces of
        the photos in ``scope`` only (applied inside the vector index, and every hit checked
        against the catalog as a scoped image search's)."""
        records: dict[int, ImageRecord] = {}

        def persons_of(face_ids: list[int]) -> dict[int, int]:
            if not scope.everything:
                images = self.catalog.images.images_of_faces(gid, face_ids)
                admitted = admitted_faces(self.catalog.images, gid, images, scope, records) or set()
                face_ids = [face for face in face_ids if face in admitted]
            found = self.catalog.persons.of_faces(gid, face_ids)
            return {face: a.person for face, a in found.items() if a.person is not None}

        found = nearest_groups(self.indexes, gid, query, top_k, threshold, persons_of, scope)
        ranked = sorted(((person, person_score(hits), hits[0][1]) for person, hits in found), key=lambda r: -r[1])
        return [row for row in ranked if row[1] >= threshold][:top_k]

    def search(self, key: KeyRecord, request: PersonSearch) -> list[PersonMatch]:
        gid = key.gallery
        pack = self.reader.pack_for(self.catalog.images.gallery(gid).pack)  # PackMismatch before any model runs
        faces = self.reader.faces_in(self.reader.photo_data(request.photo), limit=1, pack=pack.name)
        if not faces:
            raise NoFace("no face was found in the query image")
        limit = self.default_threshold(gid) if request.threshold is None else request.threshold
        self.persons.keys.used(gid, request.scope)
        ranked = self.nearest(gid, faces[0].embedding, request.top_k, limit, request.scope)
        records = self.catalog.persons.get_many(gid, [person for person, _, _ in ranked])
        views = {view.id: view for view in self.persons.views(gid, list(records.values()))}
        placed = self.persons.placed(gid, [face for _, _, face in ranked])
        return [
            PersonMatch(views[person], round(score, 4), placed[face])
            for person, score, face in ranked
            if person in views and face in placed
        ]
