"""Persons in LMDB: who they are, which face of which image each holds, and the grouping state.

A face's assignment (``face_persons``) and its person's row for the face's image
(``person_images``) are always written in the same transaction, so a face is in one person
at most, and a person holds one face of an image at most (the image is in its key). The
order persons are listed in is a key of its own (``person_order``), moved whenever a name
or a count changes. What a change may do is ``index.persons``'s; this is where it is kept.
"""

from __future__ import annotations

import json
from typing import Any

import lmdb

import index.persons as rules

from ..records import (
    Applied,
    FaceAssignment,
    Forgotten,
    GroupingState,
    GroupOp,
    ImageRecord,
    PersonRecord,
    Source,
)
from .encoding import (
    decode_assignment,
    decode_face,
    decode_image,
    decode_person,
    decode_person_face,
    dumps,
    encode,
    encode_assignment,
    encode_person_face,
    first_of,
    pair,
    third_of,
    triple,
    u64,
)
from .environment import Environment
from .removal import drop_faces

UNNAMED_RANK = 1 << 63  # unnamed persons are listed by this minus their faces: most faces first


def order_key(person: PersonRecord) -> bytes:
    """Named persons first, by name then id; then the unnamed, most faces first then by id."""
    if person.name:
        return u64(person.gallery) + b"\0" + person.sort_key.encode() + b"\0" + u64(person.id)
    return u64(person.gallery) + b"\1" + u64(UNNAMED_RANK - person.faces) + u64(person.id)


class PersonWrite:
    """``index.persons.Rows`` over one LMDB write transaction: persons read as needed, changed
    in memory, and written back by ``flush``."""

    def __init__(self, env: Environment, txn: lmdb.Transaction, gid: int) -> None:
        self.env, self.txn, self.gid = env, txn, gid
        self._persons: dict[int, PersonRecord | None] = {}
        self._listed: dict[int, bytes] = {}  # order keys as found, for the ones that move
        self._lost_cover: set[int] = set()
        self._records: dict[int, ImageRecord | None] = {}
        self.state = read_state(env, txn, gid)

    def person(self, person_id: int) -> PersonRecord | None:
        if person_id not in self._persons:
            raw = self.txn.get(pair(self.gid, person_id), db=self.env.db["persons"])
            found = decode_person(raw) if raw is not None else None
            self._persons[person_id] = found
            if found is not None:
                self._listed[person_id] = order_key(found)
        return self._persons[person_id]

    def assignment(self, face: int) -> FaceAssignment | None:
        raw = self.txn.get(pair(self.gid, face), db=self.env.db["face_persons"])
        return None if raw is None else decode_assignment(raw)[0]

    def image_record(self, image_id: int) -> ImageRecord | None:
        if image_id not in self._records:
            raw = self.txn.get(u64(image_id), db=self.env.db["images"])
            record = decode_image(raw) if raw is not None else None
            self._records[image_id] = record if record is not None and record.gallery == self.gid else None
        return self._records[image_id]

    def face(self, face: int) -> rules.Where | None:
        raw = self.txn.get(pair(self.gid, face), db=self.env.db["faces"])
        record = None if raw is None else self.image_record(decode_face(raw).image)
        if record is None:
            return None
        info = record.face(face)
        return record.id, rules.quality(info.bbox, info.score)

    def holds(self, person_id: int, image: int) -> int | None:
        raw = self.txn.get(triple(self.gid, person_id, image), db=self.env.db["person_images"])
        return None if raw is None else decode_person_face(raw)[0]

    def members(self, person_id: int) -> list[tuple[int, int, float]]:
        rows = self.env.walk(self.txn, "person_images", pair(self.gid, person_id))
        return [(third_of(key), *decode_person_face(raw)) for key, raw in rows]

    def new(self, name: str, metadata: dict[str, Any], edited: bool, created_at: str) -> PersonRecord:
        person_id = self.env.next_id(self.txn, "next_person")
        person = PersonRecord(person_id, self.gid, name, metadata, 0, None, edited, created_at)
        self._persons[person_id] = person
        self.state["persons"] += 1
        return person

    def link(self, person: PersonRecord, face: int, where: rules.Where, by_user: bool) -> None:
        image, quality = where
        self.txn.put(
            triple(self.gid, person.id, image), encode_person_face(face, quality), db=self.env.db["person_images"]
        )
        assignment = encode_assignment(FaceAssignment(person.id, by_user), image)
        self.txn.put(pair(self.gid, face), assignment, db=self.env.db["face_persons"])
        person.faces += 1
        self.state["placed"] += 1
        if person.cover is None or (person.id not in self._lost_cover and quality > self._cover_quality(person)):
            person.cover = face

    def _cover_quality(self, person: PersonRecord) -> float:
        raw = self.txn.get(pair(self.gid, person.cover or 0), db=self.env.db["face_persons"])
        found = raw and self.txn.get(
            triple(self.gid, person.id, decode_assignment(raw)[1]), db=self.env.db["person_images"]
        )
        return decode_person_face(found)[1] if found else -1.0

    def unlink(self, face: int, then: FaceAssignment | None) -> int | None:
        key = pair(self.gid, face)
        raw = self.txn.get(key, db=self.env.db["face_persons"])
        assignment, image = decode_assignment(raw) if raw is not None else (FaceAssignment(None), 0)
        if assignment.person is not None:
            self.txn.delete(triple(self.gid, assignment.person, image), db=self.env.db["person_images"])
            person = self.person(assignment.person)
            self.state["placed"] -= 1
            if person is not None:
                person.faces -= 1
                if person.cover == face:
                    self._lost_cover.add(person.id)
        if then is None:
            if raw is not None:
                self.txn.delete(key, db=self.env.db["face_persons"])
        else:
            where = image or decode_face(self.txn.get(key, db=self.env.db["faces"])).image
            self.txn.put(key, encode_assignment(then, where), db=self.env.db["face_persons"])
        return assignment.person

    def waiting(self, faces: int) -> None:
        self.state["pending"] += faces

    def remove_faces(self, by_image: dict[int, set[int]]) -> tuple[list[ImageRecord], list[int]]:
        return drop_faces(self.env, self.txn, self.gid, dict(sorted(by_image.items())))

    def flush(self) -> None:
        for person_id, person in self._persons.items():
            if person is None:
                continue
            listed = self._listed.get(person_id)
            if person.faces <= 0:
                self.txn.delete(pair(self.gid, person_id), db=self.env.db["persons"])
                if listed is not None:
                    self.txn.delete(listed, db=self.env.db["person_order"])
                self.state["persons"] -= 1
                self._persons[person_id] = None
                continue
            if person_id in self._lost_cover:
                person.cover = max(self.members(person_id), key=lambda member: (member[2], -member[1]))[1]
            self.txn.put(pair(self.gid, person_id), encode(person), db=self.env.db["persons"])
            now = order_key(person)
            if listed != now:
                if listed is not None:
                    self.txn.delete(listed, db=self.env.db["person_order"])
                self.txn.put(now, u64(person_id), db=self.env.db["person_order"])
                self._listed[person_id] = now
        self._lost_cover.clear()
        write_state(self.env, self.txn, self.gid, self.state)


def read_state(env: Environment, txn: lmdb.Transaction, gid: int) -> dict[str, int]:
    raw = txn.get(u64(gid), db=env.db["person_state"])
    return {"persons": 0, "pending": 0, "watermark": 0, "placed": 0, **(json.loads(raw) if raw is not None else {})}


def write_state(env: Environment, txn: lmdb.Transaction, gid: int, state: dict[str, int]) -> None:
    txn.put(u64(gid), dumps(state), db=env.db["person_state"])


class LmdbPersons:
    """``index.catalog.PersonTable``."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def _get(self, txn: lmdb.Transaction, gid: int, person_id: int) -> PersonRecord | None:
        raw = txn.get(pair(gid, person_id), db=self.env.db["persons"])
        return decode_person(raw) if raw is not None else None

    def get(self, gid: int, person_id: int) -> PersonRecord | None:
        return self.env.read(lambda txn: self._get(txn, gid, person_id))

    def get_many(self, gid: int, person_ids: list[int]) -> dict[int, PersonRecord]:
        def fetch(txn: lmdb.Transaction) -> dict[int, PersonRecord]:
            found = {person_id: self._get(txn, gid, person_id) for person_id in person_ids}
            return {person_id: person for person_id, person in found.items() if person is not None}

        return self.env.read(fetch)

    def page(self, gid: int, offset: int, limit: int) -> tuple[list[PersonRecord], int]:
        def page(txn: lmdb.Transaction) -> tuple[list[PersonRecord], int]:
            persons: list[PersonRecord] = []
            for index, (_, raw) in enumerate(self.env.walk(txn, "person_order", u64(gid))):
                if len(persons) >= limit:
                    break
                if index >= offset and (found := self._get(txn, gid, first_of(raw))) is not None:
                    persons.append(found)
            return persons, read_state(self.env, txn, gid)["persons"]

        return self.env.read(page)

    def of_faces(self, gid: int, face_ids: list[int]) -> dict[int, FaceAssignment]:
        def fetch(txn: lmdb.Transaction) -> dict[int, FaceAssignment]:
            found = {face: txn.get(pair(gid, face), db=self.env.db["face_persons"]) for face in face_ids}
            return {face: decode_assignment(raw)[0] for face, raw in found.items() if raw is not None}

        return self.env.read(fetch)

    def images(self, gid: int, person_id: int, offset: int, limit: int) -> list[tuple[int, int]]:
        def walk(txn: lmdb.Transaction) -> list[tuple[int, int]]:
            found: list[tuple[int, int]] = []
            for index, (key, raw) in enumerate(self.env.walk_back(txn, "person_images", pair(gid, person_id))):
                if len(found) >= limit:
                    break
                if index >= offset:
                    found.append((third_of(key), decode_person_face(raw)[0]))
            return found

        return self.env.read(walk)


class LmdbPersonEdits:
    """``index.catalog.PersonEdits``: ``index.persons``'s rules, each in one write transaction."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def _write(self, gid: int, change: Any) -> Any:
        return self.env.write(lambda txn: change(PersonWrite(self.env, txn, gid)))

    def create(
        self, gid: int, name: str, metadata: dict[str, Any], face_ids: list[int], created_at: str
    ) -> PersonRecord:
        made: PersonRecord = self._write(gid, lambda rows: rules.create(rows, name, metadata, face_ids, created_at))
        return made

    def update(
        self, gid: int, person_id: int, name: str | None, metadata: dict[str, Any] | None
    ) -> PersonRecord | None:
        changed: PersonRecord | None = self._write(gid, lambda rows: rules.update(rows, person_id, name, metadata))
        return changed

    def delete(self, gid: int, person_id: int) -> bool:
        return bool(self._write(gid, lambda rows: rules.delete(rows, person_id)))

    def merge(self, gid: int, into: int, person_ids: list[int]) -> PersonRecord:
        merged: PersonRecord = self._write(gid, lambda rows: rules.merge(rows, into, person_ids))
        return merged

    def move(self, gid: int, person_id: int, face_ids: list[int], source: Source | None) -> PersonRecord:
        moved: PersonRecord = self._write(gid, lambda rows: rules.move(rows, person_id, face_ids, source))
        return moved

    def take_out(self, gid: int, person_id: int, face_ids: list[int]) -> PersonRecord | None:
        left: PersonRecord | None = self._write(gid, lambda rows: rules.take_out(rows, person_id, face_ids))
        return left

    def forget(self, gid: int, person_id: int) -> Forgotten | None:
        forgotten: Forgotten | None = self._write(gid, lambda rows: rules.forget(rows, person_id))
        return forgotten


class LmdbGrouping:
    """``index.catalog.Grouping``."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def state(self, gid: int) -> GroupingState:
        found = self.env.read(lambda txn: read_state(self.env, txn, gid))
        return GroupingState(found["pending"], found["watermark"], found["placed"])

    def assignments(self, gid: int) -> dict[int, FaceAssignment]:
        def walk(txn: lmdb.Transaction) -> dict[int, FaceAssignment]:
            rows = self.env.walk(txn, "face_persons", u64(gid))
            return {int.from_bytes(key[8:], "big"): decode_assignment(raw)[0] for key, raw in rows}

        return self.env.read(walk)

    def commit(self, gid: int, ops: list[GroupOp], min_faces: int, created_at: str) -> Applied:
        return self.env.write(lambda txn: rules.commit(PersonWrite(self.env, txn, gid), ops, min_faces, created_at))

    def finish(self, gid: int, watermark: int, pending: int) -> GroupingState:
        def finish(txn: lmdb.Transaction) -> GroupingState:
            state = read_state(self.env, txn, gid)
            state["pending"] = max(0, state["pending"] - pending)
            state["watermark"] = max(state["watermark"], watermark)
            write_state(self.env, txn, gid, state)
            return GroupingState(state["pending"], state["watermark"], state["placed"])

        return self.env.write(finish)

    def due(self, pending: int) -> list[int]:
        def scan(txn: lmdb.Transaction) -> list[int]:
            rows = txn.cursor(db=self.env.db["person_state"])
            return [first_of(key) for key, raw in rows if json.loads(raw).get("pending", 0) >= pending]

        return self.env.read(scan)
