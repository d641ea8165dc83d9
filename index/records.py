"""The typed values that cross the storage seam, whatever backend keeps them.

A catalog (``index.catalog``) stores and returns these; a vector index (``index.vectors``)
reads changes and snapshots as these. How a backend encodes them (LMDB bytes, SQL rows)
is its own business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ADD = b"+"
REMOVE = b"-"


@dataclass
class KeyRecord:
    """An API key: its gallery, its secret's hash and its request quota."""

    name: str
    gallery: int
    secret_hash: str
    quota: int | None = None
    revoked: bool = False
    created_at: str = ""


@dataclass
class GalleryRecord:
    """One key's gallery: which pack embedded it, its sizes and its change sequence."""

    key: str
    pack: str | None = None
    dim: int | None = None
    seq: int = 0
    images: int = 0
    faces: int = 0
    # The vector index's version, kept here so that every process agrees which index is
    # current; only the vector backend gives it a meaning (``index.faiss`` numbers its files).
    index_generation: int = 0


@dataclass
class FaceInfo:
    id: int
    bbox: list[float]
    score: float


@dataclass
class ImageRecord:
    id: int
    gallery: int
    file: str
    content_type: str
    metadata: dict[str, Any]
    created_at: str
    pack: str
    faces: list[FaceInfo] = field(default_factory=list)

    def face(self, face_id: int) -> FaceInfo:
        return next(face for face in self.faces if face.id == face_id)


@dataclass
class NewFace:
    """A face to store: where it is, how sure the detector was, and its embedding."""

    bbox: list[float]
    score: float
    embedding: np.ndarray


@dataclass
class NewImage:
    """An image to store with all its faces in one atomic write.

    ``source_digest`` (a bulk import's content hash) is recorded in the same write, so an
    import killed at any point neither loses nor repeats a photo when resumed.
    """

    file: str
    content_type: str
    metadata: dict[str, Any]
    created_at: str
    pack: str
    faces: list[NewFace]
    source_digest: bytes | None = None


@dataclass(frozen=True)
class Change:
    """One entry of a gallery's change log: a face added or removed, numbered by the gallery's seq."""

    seq: int
    op: bytes
    face: int

    @property
    def is_add(self) -> bool:
        return self.op == ADD


@dataclass(frozen=True)
class ChangeBatch:
    """The changes after some seq, the vectors of the faces added and still live, and the
    log's first seq: above ``seq + 1`` the log was trimmed past what the reader has seen, so
    it must reload from a snapshot instead of replaying."""

    changes: list[Change]
    vectors: dict[int, np.ndarray]
    first: int | None

    def bridges(self, seen: int, head: int) -> bool:
        """True when replaying this batch brings an index at ``seen`` to ``head``."""
        return head <= seen or (self.first is not None and self.first <= seen + 1)


@dataclass(frozen=True)
class Snapshot:
    """Every live face of a gallery, read at once with the gallery record it matches: its seq
    says which changes the vectors include."""

    gallery: GalleryRecord
    ids: np.ndarray  # (n,) int64 face ids
    vectors: np.ndarray  # (n, dim) float32

    @classmethod
    def gather(cls, gallery: GalleryRecord, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Snapshot:
        """The batches of a catalog's scan in one preallocated array: a million faces cost
        their 2 GB once, not twice."""
        ids = np.empty(gallery.faces, dtype=np.int64)
        vectors = np.empty((gallery.faces, gallery.dim or 0), dtype=np.float32)
        count = 0
        for batch_ids, batch_vectors in batches:
            if count + len(batch_ids) > len(ids):
                raise RuntimeError(f"the gallery of key {gallery.key!r} holds more faces than its record counts")
            ids[count : count + len(batch_ids)] = batch_ids
            vectors[count : count + len(batch_ids)] = batch_vectors
            count += len(batch_ids)
        return cls(gallery, ids[:count], vectors[:count])


@dataclass(frozen=True)
class StagedSnapshot(Snapshot):
    """The re-embedded vectors of every live face, and the images not re-embedded yet."""

    missing: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class JobBatch:
    """One batch of a bulk job (an import's photo names, a re-embedding's image ids), as a
    worker claimed it."""

    job: str
    number: int
    items: list[Any]


def collection_key(pack: str, dim: int) -> str:
    """How the outbox names the vectors of one pack and dimension (a vector backend maps it to its own name)."""
    return f"{pack}/{dim}"


@dataclass(frozen=True)
class Pending:
    """The next changes of a gallery's outbox, with what the faces still live look like now."""

    pack: str
    dim: int
    changes: list[tuple[int, str, int]]  # (seq, op, face) in seq order
    live: dict[int, tuple[int, list[float], np.ndarray]]  # face -> (image, box, vector), for the faces still stored

    @property
    def collection(self) -> str:
        return collection_key(self.pack, self.dim)

    @property
    def last(self) -> int:
        return self.changes[-1][0]


@dataclass(frozen=True)
class Progress:
    """Where a gallery's vectors in one collection stand against its change log."""

    applied: int  # the last seq applied
    head: int  # the gallery's last seq
    oldest_pending_seconds: float  # age of the oldest change not applied yet (0: none)
    applied_seconds_ago: float | None  # since the last apply committed (None: never)

    @property
    def pending(self) -> int:
        return max(0, self.head - self.applied)
