"""Persons in PostgreSQL: ``persons``, each face's assignment in ``face_persons`` (a unique
index keeps a person to one face of an image), and ``person_state``.

Every change takes its gallery's row lock first, as every write of the gallery does, so a
gallery's person edits, adds, deletes and a run's commits are serialised: an edit checks
what it changes as the last commit left it. What a change may do is ``index.persons``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Json

import index.persons as rules

from ..records import (
    Applied,
    FaceAssignment,
    FaceInfo,
    Forgotten,
    GalleryRecord,
    GroupingState,
    GroupOp,
    ImageRecord,
    PersonRecord,
    Source,
)
from .database import Database, one
from .galleries import locked_gallery
from .removal import drop_faces

T = TypeVar("T")
PERSON = "id, gallery, name, metadata, faces, cover, edited, created_at"
PERSON_INSERT = (
    "INSERT INTO persons (gallery, id, name, sort_key, metadata, faces, cover, edited, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def person_values(person: PersonRecord) -> tuple:
    """What ``persons`` keeps of a person beside its gallery and id, in ``PERSON_INSERT``'s order."""
    return (person.name, person.sort_key, Json(person.metadata), person.faces, person.cover, person.edited)


def _person(row: tuple) -> PersonRecord:
    return PersonRecord(*row)


def _assignment(person: int | None, by_user: bool, kept_out: int | None) -> FaceAssignment:
    return FaceAssignment(person, by_user, kept_out)


def face_places(cursor: psycopg.Cursor, gid: int, faces: list[int]) -> dict[int, rules.Where]:
    """Each face's image and its quality as a person's face, for those of ``faces`` the gallery holds."""
    found = cursor.execute(
        "SELECT f.id, i.id, i.faces FROM faces f JOIN images i ON i.id = f.image "
        "WHERE f.gallery = %s AND f.id = ANY(%s)",
        (gid, list(faces)),
    ).fetchall()
    places = {}
    for face, image, stored in found:
        info = next(FaceInfo(**entry) for entry in stored if entry["id"] == face)
        places[face] = (image, rules.quality(info.bbox, info.score))
    return places


class PgRows:
    """``index.persons.Rows`` over one transaction that holds the gallery's row lock."""

    def __init__(self, cursor: psycopg.Cursor, gid: int, gallery: GalleryRecord | None = None) -> None:
        """``gallery``: its record, locked already by the caller's transaction."""
        self.cursor, self.gid = cursor, gid
        self.gallery = gallery or locked_gallery(cursor, gid)
        self._persons: dict[int, PersonRecord | None] = {}
        self._new: set[int] = set()
        self._lost_cover: set[int] = set()
        self._waiting = 0

    def person(self, person_id: int) -> PersonRecord | None:
        if person_id not in self._persons:
            found = self.cursor.execute(
                f"SELECT {PERSON} FROM persons WHERE gallery = %s AND id = %s", (self.gid, person_id)
            ).fetchone()
            self._persons[person_id] = _person(found) if found else None
        return self._persons[person_id]

    def assignment(self, face: int) -> FaceAssignment | None:
        found = self.cursor.execute(
            "SELECT person, by_user, kept_out FROM face_persons WHERE gallery = %s AND face = %s", (self.gid, face)
        ).fetchone()
        return _assignment(*found) if found else None

    def face(self, face: int) -> rules.Where | None:
        return face_places(self.cursor, self.gid, [face]).get(face)

    def holds(self, person_id: int, image: int) -> int | None:
        found = self.cursor.execute(
            "SELECT face FROM face_persons WHERE gallery = %s AND person = %s AND image = %s",
            (self.gid, person_id, image),
        ).fetchone()
        return found[0] if found else None

    def members(self, person_id: int) -> list[tuple[int, int, float]]:
        found = self.cursor.execute(
            "SELECT image, face, quality FROM face_persons WHERE gallery = %s AND person = %s ORDER BY image",
            (self.gid, person_id),
        )
        return [(image, face, float(quality)) for image, face, quality in found]

    def new(self, name: str, metadata: dict[str, Any], edited: bool, created_at: str) -> PersonRecord:
        (person_id,) = one(self.cursor.execute("SELECT nextval('person_ids')"))
        person = PersonRecord(person_id, self.gid, name, metadata, 0, None, edited, created_at)
        self._persons[person_id] = person
        self._new.add(person_id)
        return person

    def link(self, person: PersonRecord, face: int, where: rules.Where, by_user: bool) -> None:
        image, quality = where
        self.cursor.execute(
            "INSERT INTO face_persons (gallery, face, image, person, by_user, kept_out, quality) "
            "VALUES (%s, %s, %s, %s, %s, NULL, %s) ON CONFLICT (gallery, face) DO UPDATE SET image = excluded.image, "
            "person = excluded.person, by_user = excluded.by_user, kept_out = NULL, quality = excluded.quality",
            (self.gid, face, image, person.id, by_user, quality),
        )
        person.faces += 1
        if person.cover is None or (person.id not in self._lost_cover and quality > self._cover_quality(person)):
            person.cover = face

    def _cover_quality(self, person: PersonRecord) -> float:
        found = self.cursor.execute(
            "SELECT quality FROM face_persons WHERE gallery = %s AND face = %s AND person = %s",
            (self.gid, person.cover, person.id),
        ).fetchone()
        return float(found[0]) if found else -1.0

    def unlink(self, face: int, then: FaceAssignment | None) -> int | None:
        if then is None:
            found = self.cursor.execute(
                "DELETE FROM face_persons WHERE gallery = %s AND face = %s RETURNING person", (self.gid, face)
            ).fetchone()
        else:
            found = self.cursor.execute(
                "SELECT person FROM face_persons WHERE gallery = %s AND face = %s", (self.gid, face)
            ).fetchone()
            self.cursor.execute(
                "INSERT INTO face_persons (gallery, face, image, person, by_user, kept_out, quality) "
                "SELECT %s, %s, image, NULL, %s, %s, 0 FROM faces WHERE gallery = %s AND id = %s "
                "ON CONFLICT (gallery, face) DO UPDATE SET person = NULL, by_user = excluded.by_user, "
                "kept_out = excluded.kept_out",
                (self.gid, face, then.by_user, then.kept_out, self.gid, face),
            )
        left = found[0] if found else None
        person = self.person(left) if left is not None else None
        if person is not None:
            person.faces -= 1
            if person.cover == face:
                self._lost_cover.add(person.id)
        return left

    def waiting(self, faces: int) -> None:
        self._waiting += faces

    def remove_faces(self, by_image: dict[int, set[int]]) -> tuple[list[ImageRecord], list[int]]:
        return drop_faces(self.cursor, self.gid, self.gallery, dict(sorted(by_image.items())))

    def flush(self) -> None:
        for person_id, person in self._persons.items():
            if person is None:
                continue
            if person.faces <= 0:
                self.cursor.execute("DELETE FROM persons WHERE gallery = %s AND id = %s", (self.gid, person_id))
                self._persons[person_id] = None
                continue
            if person_id in self._lost_cover:
                (person.cover,) = one(
                    self.cursor.execute(
                        "SELECT face FROM face_persons WHERE gallery = %s AND person = %s "
                        "ORDER BY quality DESC, face LIMIT 1",
                        (self.gid, person_id),
                    )
                )
            values = person_values(person)
            if person_id in self._new:
                self.cursor.execute(PERSON_INSERT, (self.gid, person_id, *values, person.created_at))
            else:
                self.cursor.execute(
                    "UPDATE persons SET name = %s, sort_key = %s, metadata = %s, faces = %s, cover = %s, edited = %s "
                    "WHERE gallery = %s AND id = %s",
                    (*values, self.gid, person_id),
                )
        self._new.clear()
        self._lost_cover.clear()
        if self._waiting:
            _add_pending(self.cursor, self.gid, self._waiting)
            self._waiting = 0


def _add_pending(cursor: psycopg.Cursor, gid: int, faces: int) -> None:
    cursor.execute(
        "INSERT INTO person_state (gallery, pending) VALUES (%s, %s) "
        "ON CONFLICT (gallery) DO UPDATE SET pending = person_state.pending + excluded.pending",
        (gid, faces),
    )


class PostgresPersons:
    """``index.catalog.PersonTable``."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def get(self, gid: int, person_id: int) -> PersonRecord | None:
        return self.get_many(gid, [person_id]).get(person_id)

    def get_many(self, gid: int, person_ids: list[int]) -> dict[int, PersonRecord]:
        if not person_ids:
            return {}
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"SELECT {PERSON} FROM persons WHERE gallery = %s AND id = ANY(%s)", (gid, list(person_ids))
            ).fetchall()
        by_id = {row[0]: _person(row) for row in found}
        return {person_id: by_id[person_id] for person_id in person_ids if person_id in by_id}

    def page(self, gid: int, offset: int, limit: int) -> tuple[list[PersonRecord], int]:
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"SELECT {PERSON} FROM persons WHERE gallery = %s ORDER BY gallery, name = '', "
                "(CASE WHEN name <> '' THEN sort_key END) COLLATE \"C\", (CASE WHEN name = '' THEN -faces END), id "
                "OFFSET %s LIMIT %s",
                (gid, offset, limit),
            ).fetchall()
            (total,) = one(cursor.execute("SELECT count(*) FROM persons WHERE gallery = %s", (gid,)))
        return [_person(row) for row in found], total

    def of_faces(self, gid: int, face_ids: list[int]) -> dict[int, FaceAssignment]:
        if not face_ids:
            return {}
        with self.db.transaction() as cursor:
            found = cursor.execute(
                "SELECT face, person, by_user, kept_out FROM face_persons WHERE gallery = %s AND face = ANY(%s)",
                (gid, list(face_ids)),
            ).fetchall()
        return {face: _assignment(*rest) for face, *rest in found}

    def images(self, gid: int, person_id: int, offset: int, limit: int) -> list[tuple[int, int]]:
        with self.db.transaction() as cursor:
            found = cursor.execute(
                "SELECT image, face FROM face_persons WHERE gallery = %s AND person = %s "
                "ORDER BY image DESC OFFSET %s LIMIT %s",
                (gid, person_id, offset, limit),
            ).fetchall()
        return [(image, face) for image, face in found]


class _Writes:
    """One transaction on the gallery's persons, under its row lock."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def _write(self, gid: int, change: Callable[[PgRows], T]) -> T:
        with self.db.transaction() as cursor:
            return change(PgRows(cursor, gid))


class PostgresPersonEdits(_Writes):
    """``index.catalog.PersonEdits``."""

    def create(
        self, gid: int, name: str, metadata: dict[str, Any], face_ids: list[int], created_at: str
    ) -> PersonRecord:
        return self._write(gid, lambda found: rules.create(found, name, metadata, face_ids, created_at))

    def update(
        self, gid: int, person_id: int, name: str | None, metadata: dict[str, Any] | None
    ) -> PersonRecord | None:
        return self._write(gid, lambda found: rules.update(found, person_id, name, metadata))

    def delete(self, gid: int, person_id: int) -> bool:
        return self._write(gid, lambda found: rules.delete(found, person_id))

    def merge(self, gid: int, into: int, person_ids: list[int]) -> PersonRecord:
        return self._write(gid, lambda found: rules.merge(found, into, person_ids))

    def move(self, gid: int, person_id: int, face_ids: list[int], source: Source | None) -> PersonRecord:
        return self._write(gid, lambda found: rules.move(found, person_id, face_ids, source))

    def take_out(self, gid: int, person_id: int, face_ids: list[int]) -> PersonRecord | None:
        return self._write(gid, lambda found: rules.take_out(found, person_id, face_ids))

    def forget(self, gid: int, person_id: int) -> Forgotten | None:
        return self._write(gid, lambda found: rules.forget(found, person_id))


class PostgresGrouping(_Writes):
    """``index.catalog.Grouping``."""

    def state(self, gid: int) -> GroupingState:
        with self.db.transaction() as cursor:
            found = cursor.execute("SELECT pending, watermark FROM person_state WHERE gallery = %s", (gid,)).fetchone()
            (placed,) = one(cursor.execute("SELECT coalesce(sum(faces), 0) FROM persons WHERE gallery = %s", (gid,)))
        pending, watermark = found or (0, 0)
        return GroupingState(pending, watermark, int(placed))

    def assignments(self, gid: int) -> dict[int, FaceAssignment]:
        with self.db.transaction(long=True) as cursor:
            found = cursor.execute(
                "SELECT face, person, by_user, kept_out FROM face_persons WHERE gallery = %s", (gid,)
            ).fetchall()
        return {face: _assignment(*rest) for face, *rest in found}

    def commit(self, gid: int, ops: list[GroupOp], min_faces: int, created_at: str) -> Applied:
        return self._write(gid, lambda found: rules.commit(found, ops, min_faces, created_at))

    def finish(self, gid: int, watermark: int, pending: int) -> GroupingState:
        with self.db.transaction() as cursor:
            found = one(
                cursor.execute(
                    "INSERT INTO person_state (gallery, pending, watermark) VALUES (%s, 0, %s) "
                    "ON CONFLICT (gallery) DO UPDATE SET pending = greatest(0, person_state.pending - %s), "
                    "watermark = greatest(person_state.watermark, excluded.watermark) RETURNING pending, watermark",
                    (gid, watermark, pending),
                )
            )
            (placed,) = one(cursor.execute("SELECT coalesce(sum(faces), 0) FROM persons WHERE gallery = %s", (gid,)))
        pending, watermark = found
        return GroupingState(pending, watermark, int(placed))

    def due(self, pending: int) -> list[int]:
        with self.db.transaction() as cursor:
            return [
                row[0] for row in cursor.execute("SELECT gallery FROM person_state WHERE pending >= %s", (pending,))
            ]
