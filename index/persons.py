"""The rules of persons, the same in every catalog backend: what a user's edit, a grouping
run's commit and an add may do to which face, written once over the rows a backend reads
and writes within one transaction on one gallery (``Rows``).

Invariants every change keeps: a face is in one person at most; a person holds one face of
an image at most; a person with no face is removed; a user's edit marks the persons it
changes as edited, and a run never folds an edited person or puts back a face a user took
out. A change that would break one refuses (``AssignmentConflictError``) or, for a run's
operations, skips what no longer holds: never both half.
"""

from __future__ import annotations

from typing import Any, Protocol

from .errors import AssignmentConflictError, UnknownFacesError, UnknownPersonsError
from .records import (
    EVERY_PERSON,
    Applied,
    Attach,
    FaceAssignment,
    Fold,
    Forgotten,
    GroupOp,
    ImageRecord,
    NewFace,
    PersonRecord,
    Source,
)

Where = tuple[int, float]  # a face's image, and how well it shows its person (``quality``)


def quality(bbox: list[float], score: float) -> float:
    """How well a face shows its person: its shorter side, weighed by the detector's confidence.
    A person's cover is its face of the highest quality (the lowest face id among equals)."""
    x1, y1, x2, y2 = bbox
    return float(min(x2 - x1, y2 - y1) * score)


class Rows(Protocol):
    """A backend's persons of one gallery within one write transaction."""

    def person(self, person_id: int) -> PersonRecord | None:
        """The person, read once per transaction: changes are made to the record returned."""
        ...

    def assignment(self, face: int) -> FaceAssignment | None: ...

    def face(self, face: int) -> Where | None:
        """A live face of the gallery: its image and quality."""
        ...

    def holds(self, person_id: int, image: int) -> int | None:
        """The person's face of that image, if it has one."""
        ...

    def members(self, person_id: int) -> list[tuple[int, int, float]]:
        """(image, face, quality) of every face of the person."""
        ...

    def new(self, name: str, metadata: dict[str, Any], edited: bool, created_at: str) -> PersonRecord: ...

    def link(self, person: PersonRecord, face: int, where: Where, by_user: bool) -> None:
        """Put a face that is in no person into ``person``, which holds no face of its image,
        taking it as cover if it shows the person better."""
        ...

    def unlink(self, face: int, then: FaceAssignment | None) -> int | None:
        """Take the face out of its person (if any) and leave it as ``then`` (no assignment at
        all: None); the person it was in, whose count drops and whose cover is chosen again."""
        ...

    def waiting(self, faces: int) -> None:
        """Count faces added that no person took at once."""
        ...

    def remove_faces(self, by_image: dict[int, set[int]]) -> tuple[list[ImageRecord], list[int]]:
        """Delete faces of these images from the catalog (logged); the images left with no
        face are deleted: (those, the ids of the others)."""
        ...

    def flush(self) -> None:
        """Store every person read or made: the empty removed, covers and list order updated."""
        ...


def persons(rows: Rows, person_ids: list[int]) -> list[PersonRecord]:
    """The persons in order (each once); UnknownPersonsError naming those not in the gallery."""
    found = {person_id: rows.person(person_id) for person_id in dict.fromkeys(person_ids)}
    if missing := [person_id for person_id, person in found.items() if person is None]:
        raise UnknownPersonsError(missing)
    return [person for person in found.values() if person is not None]


def faces(rows: Rows, face_ids: list[int]) -> dict[int, Where]:
    """Each face's image and quality; UnknownFacesError naming those not in the gallery."""
    found = {face: rows.face(face) for face in dict.fromkeys(face_ids)}
    if missing := [face for face, where in found.items() if where is None]:
        raise UnknownFacesError(missing)
    return {face: where for face, where in found.items() if where is not None}


def moved_in(rows: Rows, person: PersonRecord, chosen: dict[int, Where]) -> None:
    """A user puts the faces in ``person`` from wherever they are; AssignmentConflictError when
    two of them, or one of them and one of the person's, are of one image."""
    images: dict[int, int] = {}
    for face, (image, _) in chosen.items():
        first = images.setdefault(image, face)
        held = rows.holds(person.id, image)
        if first != face or (held is not None and held != face):
            raise AssignmentConflictError(
                f"faces {first if first != face else held} and {face} are of the same image ({image}): "
                "a person holds one face of an image"
            )
    for face, where in chosen.items():
        if rows.holds(person.id, where[0]) == face:
            continue
        left = rows.unlink(face, None)
        if left is not None and (source := rows.person(left)) is not None:
            source.edited = True
        rows.link(person, face, where, by_user=True)
    person.edited = True


def create(rows: Rows, name: str, metadata: dict[str, Any], face_ids: list[int], created_at: str) -> PersonRecord:
    chosen = faces(rows, face_ids)
    person = rows.new(name, metadata, True, created_at)
    moved_in(rows, person, chosen)
    rows.flush()
    return person


def update(rows: Rows, person_id: int, name: str | None, metadata: dict[str, Any] | None) -> PersonRecord | None:
    person = rows.person(person_id)
    if person is None:
        return None
    person.name = person.name if name is None else name
    person.metadata = person.metadata if metadata is None else metadata
    person.edited = True
    rows.flush()
    return person


def delete(rows: Rows, person_id: int) -> bool:
    """The person goes; its faces stay, in no person, and no run groups them again."""
    if rows.person(person_id) is None:
        return False
    for _, face, _ in rows.members(person_id):
        rows.unlink(face, FaceAssignment(None, True, EVERY_PERSON))
    rows.flush()
    return True


def merge(rows: Rows, into: int, person_ids: list[int]) -> PersonRecord:
    target, *others = persons(rows, [into, *person_ids])
    for other in others:
        if not target.name and other.name:
            target.name = other.name
        if not target.metadata and other.metadata:
            target.metadata = other.metadata
        moved_in(rows, target, {face: (image, q) for image, face, q in rows.members(other.id)})
    target.edited = True
    rows.flush()
    return target


def move(rows: Rows, person_id: int, face_ids: list[int], source: Source | None) -> PersonRecord:
    (person,) = persons(rows, [person_id])
    chosen = faces(rows, face_ids)
    if source is not None:
        for face in chosen:
            found = rows.assignment(face)
            now = found.person if found is not None else None
            if now not in (source.person, person_id):
                where = f"person {now}" if now is not None else "no person"
                raise AssignmentConflictError(f"face {face} is in {where} now, not where the request says")
    moved_in(rows, person, chosen)
    rows.flush()
    return person


def take_out(rows: Rows, person_id: int, face_ids: list[int]) -> PersonRecord | None:
    """The faces leave the person, which no run puts them back in; None when it is left empty."""
    (person,) = persons(rows, [person_id])
    chosen = faces(rows, face_ids)
    if strays := [face for face, (image, _) in chosen.items() if rows.holds(person_id, image) != face]:
        raise AssignmentConflictError(f"face {strays[0]} is not in person {person_id} now")
    for face in chosen:
        rows.unlink(face, FaceAssignment(None, True, person_id))
    person.edited = True
    rows.flush()
    return rows.person(person_id)


def forget(rows: Rows, person_id: int) -> Forgotten | None:
    if rows.person(person_id) is None:
        return None
    by_image: dict[int, set[int]] = {}
    for image, face, _ in rows.members(person_id):
        rows.unlink(face, None)
        by_image.setdefault(image, set()).add(face)
    deleted, changed = rows.remove_faces(by_image)
    rows.flush()
    return Forgotten(sorted(face for chosen in by_image.values() for face in chosen), deleted, changed)


def added(rows: Rows, image: int, faces_: list[tuple[int, NewFace]]) -> None:
    """An add's faces join the persons they name, if those still exist (one face of the image
    per person); the others wait for the next run."""
    for face, new in faces_:
        person = rows.person(new.person) if new.person is not None else None
        if person is not None and rows.holds(person.id, image) is None:
            rows.link(person, face, (image, quality(new.bbox, new.score)), by_user=False)
        else:
            rows.waiting(1)
    rows.flush()


def deleted(rows: Rows, face_ids: list[int]) -> None:
    """Faces being deleted from the catalog leave their persons (their assignments go too)."""
    for face in face_ids:
        rows.unlink(face, None)
    rows.flush()


def commit(rows: Rows, ops: list[GroupOp], min_faces: int, created_at: str) -> Applied:
    """``Grouping.commit``: what still holds of a run's operations."""
    applied = Applied()
    for op in ops:
        if isinstance(op, Fold):
            _fold(rows, op, applied)
            continue
        person = rows.person(op.person) if isinstance(op, Attach) else None
        if isinstance(op, Attach) and person is None:
            applied.skipped += len(op.faces)
            continue
        placed = _placeable(rows, op.faces, person)
        applied.skipped += len(op.faces) - len(placed)
        if person is None:
            if len(placed) < min_faces:
                applied.skipped += len(placed)
                continue
            person = rows.new("", {}, False, created_at)
            applied.created.append(person.id)
        for face, where in placed.items():
            rows.unlink(face, None)
            rows.link(person, face, where, by_user=False)
        applied.attached += len(placed)
    rows.flush()
    return applied


def _placeable(rows: Rows, face_ids: list[int], person: PersonRecord | None) -> dict[int, Where]:
    """The faces a run may still put in ``person`` (a new one: None): live, in no person, not
    kept out of it, and of images the person (and the faces before them) has no face of."""
    placed: dict[int, Where] = {}
    images: set[int] = set()
    for face in face_ids:
        where, assignment = rows.face(face), rows.assignment(face)
        free = assignment is None or (assignment.groupable and (person is None or assignment.kept_out != person.id))
        if where is None or not free or where[0] in images:
            continue
        if person is not None and rows.holds(person.id, where[0]) is not None:
            continue
        placed[face] = where
        images.add(where[0])
    return placed


def _kept_out_of(rows: Rows, face: int, person_id: int) -> bool:
    found = rows.assignment(face)
    return found is not None and found.kept_out == person_id


def _fold(rows: Rows, op: Fold, applied: Applied) -> None:
    """Persons no user edited folded into another person, each whole or not at all (a face of
    one image on both sides keeps them apart, as does a face a user kept out of the target)."""
    target = rows.person(op.into)
    if target is None:
        applied.skipped += len(op.persons)
        return
    for other_id in op.persons:
        other = rows.person(other_id)
        members = rows.members(other_id) if other is not None and other_id != op.into and not other.edited else []
        if not members or any(
            rows.holds(target.id, image) is not None or _kept_out_of(rows, face, target.id)
            for image, face, _ in members
        ):
            applied.skipped += 1
            continue
        for image, face, q in members:
            by_user = bool((found := rows.assignment(face)) and found.by_user)
            rows.unlink(face, None)
            rows.link(target, face, (image, q), by_user)
        applied.folded += 1
