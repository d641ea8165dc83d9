"""What the use cases answer about stored images and persons: the parts of a catalog record a
caller may see. The storage's own fields (the photo's file name, the gallery, the pack, who
edited a person) stay behind the seam, so the HTTP layer renders these and never a storage
record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from index.filters import DEFAULT_COLLECTION
from index.records import ImageRecord, PersonRecord


@dataclass(frozen=True)
class PersonRef:
    """The person a face is in: enough to name it and to open it."""

    id: int
    name: str


@dataclass(frozen=True)
class StoredFace:
    """A face as stored: its id, its box in the photo, the detector's score, and its person."""

    id: int
    bbox: list[float]
    score: float
    person: PersonRef | None = None


@dataclass(frozen=True)
class Image:
    id: int
    metadata: dict[str, Any]
    created_at: str
    faces: list[StoredFace]
    collection: str = DEFAULT_COLLECTION

    @classmethod
    def of(cls, record: ImageRecord, persons: Mapping[int, PersonRef] | None = None) -> Image:
        """``persons``: face id to its person, for the faces that are in one."""
        found = persons or {}
        faces = [StoredFace(face.id, face.bbox, face.score, found.get(face.id)) for face in record.faces]
        return cls(record.id, record.metadata, record.created_at, faces, record.collection)

    def face(self, face_id: int) -> StoredFace:
        return next(face for face in self.faces if face.id == face_id)

    @property
    def named_collection(self) -> str | None:
        """The image's collection, None for the default one: an answer about an image outside
        any named collection stays as it was before collections existed."""
        return None if self.collection == DEFAULT_COLLECTION else self.collection


@dataclass(frozen=True)
class Collection:
    """One collection of a key's gallery: its name and what it holds."""

    name: str
    images: int
    faces: int


@dataclass(frozen=True)
class Cover:
    """The face that shows a person, where it is."""

    image_id: int
    face_id: int
    bbox: list[float]


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    metadata: dict[str, Any]
    faces: int
    images: int
    cover: Cover | None
    created_at: str

    @classmethod
    def of(cls, record: PersonRecord, cover: Cover | None) -> Person:
        # a person holds one face of an image: as many images as faces
        return cls(record.id, record.name, record.metadata, record.faces, record.faces, cover, record.created_at)

    @property
    def ref(self) -> PersonRef:
        return PersonRef(self.id, self.name)
