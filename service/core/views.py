"""What the use cases answer about stored images: the parts of a catalog record a caller may
see. The storage's own fields (the photo's file name, the gallery, the pack) stay behind
the seam, so the HTTP layer renders these and never a storage record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from index.filters import DEFAULT_COLLECTION
from index.records import ImageRecord


@dataclass(frozen=True)
class StoredFace:
    """A face as stored: its id, its box in the photo and the detector's score."""

    id: int
    bbox: list[float]
    score: float


@dataclass(frozen=True)
class Image:
    id: int
    metadata: dict[str, Any]
    created_at: str
    faces: list[StoredFace]
    collection: str = DEFAULT_COLLECTION

    @classmethod
    def of(cls, record: ImageRecord) -> Image:
        faces = [StoredFace(face.id, face.bbox, face.score) for face in record.faces]
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
