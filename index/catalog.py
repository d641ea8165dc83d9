"""The catalog: the source of truth for keys, galleries, images, embeddings and the change log.

Every backend implements these protocols (``index.lmdb`` embedded, ``index.postgres`` in
cluster mode). Each method is one
atomic, durable operation: what a caller was told is stored survives a crash of any
process, and what it was not told is absent as a whole. Galleries are isolated: every
method that takes a gallery id ``gid`` answers an image of another gallery as absent.

The change log numbers every face added or removed by the gallery's ``seq``; any process
keeps a vector index in step by replaying what it has not seen (``ChangeLog.since``), and
a snapshot says which seq its vectors include, so an index built from it can be brought up
to date the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import numpy as np

from .records import (
    ChangeBatch,
    GalleryRecord,
    ImageRecord,
    KeyRecord,
    NewImage,
    Snapshot,
    StagedSnapshot,
)

Batch = tuple[np.ndarray, np.ndarray]  # (face ids, their vectors)


class KeyTable(Protocol):
    """API keys, each owning one gallery, and their request counts."""

    def get(self, name: str) -> KeyRecord | None: ...

    def create(self, name: str, secret_hash: str, quota: int | None, created_at: str) -> KeyRecord:
        """A new key with a new, empty gallery; KeyExistsError if the name is taken."""
        ...

    def update(self, name: str, change: Callable[[KeyRecord], None]) -> KeyRecord | None:
        """Apply ``change`` to the key's record and store it; None when there is no such key."""
        ...

    def all(self) -> list[tuple[KeyRecord, int]]:
        """Every key with the number of requests it has made."""
        ...

    def count_request(self, name: str, quota: int | None) -> bool:
        """Count one request; False, and nothing counted, once ``quota`` requests were made."""
        ...

    def reset_usage(self, name: str) -> None: ...


class ImageTable(Protocol):
    """Galleries and their images with every face's box, score and embedding."""

    def gallery(self, gid: int) -> GalleryRecord:
        """The gallery's record; KeyError for an unknown gallery."""
        ...

    def galleries(self) -> dict[int, GalleryRecord]: ...

    def add(self, gid: int, image: NewImage) -> ImageRecord:
        """Store the image with all its faces and log them; PackMismatchError when the
        gallery holds another pack's embeddings."""
        ...

    def get(self, gid: int, image_id: int) -> ImageRecord | None: ...

    def get_many(self, gid: int, image_ids: list[int]) -> dict[int, ImageRecord]: ...

    def page(self, gid: int, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        """One page of the gallery in ascending id order, and the gallery's total."""
        ...

    def ids(self, gid: int) -> list[int]:
        """Every image id of the gallery, ascending."""
        ...

    def update_metadata(self, gid: int, image_id: int, metadata: dict) -> ImageRecord | None: ...

    def delete(self, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        """Delete the gallery's images among ``image_ids`` with their faces (logged); returns those deleted."""
        ...

    def files(self) -> set[str]:
        """The photo file name of every image of every gallery."""
        ...

    def images_of_faces(self, gid: int, face_ids: list[int]) -> dict[int, int]:
        """Face id to image id, for the live faces among ``face_ids``."""
        ...

    def face_ids(self, gid: int) -> np.ndarray:
        """Every live face id of the gallery, ascending, without reading a vector: a rebuild
        reads its training sample by these ids instead of a pass over every stored vector."""
        ...

    def vectors(self, gid: int, face_ids: list[int]) -> dict[int, np.ndarray]:
        """Face id to its exact embedding, for the live faces among ``face_ids`` (re-ranking)."""
        ...

    def imported_as(self, gid: int, digest: bytes) -> int | None:
        """The image a bulk import made from this content (0: it had no face), None if unseen."""
        ...

    def mark_imported(self, gid: int, digest: bytes) -> None:
        """Remember a photo a bulk import found no face in, so a resumed import skips it."""
        ...


class ChangeLog(Protocol):
    """Each gallery's log of faces added and removed, and consistent snapshots of its vectors."""

    def since(self, gid: int, seq: int) -> ChangeBatch: ...

    def counts(self, gid: int, seq: int) -> tuple[int, int]:
        """(adds, removes) logged after ``seq``."""
        ...

    def trim(self, gid: int, upto: int) -> None:
        """Drop entries up to ``upto``: an index saved at that seq holds them already."""
        ...

    def snapshot(self, gid: int) -> Snapshot: ...

    def scan(self, gid: int, batch: int) -> AbstractContextManager[tuple[GalleryRecord, Iterator[Batch]]]:
        """Every live face of the gallery, ``batch`` at a time, all read at one point in time
        (the gallery record says which seq): a snapshot too large to hold at once."""
        ...

    def commit_generation(self, gid: int, expected: int) -> GalleryRecord:
        """Move the gallery to index generation ``expected + 1``; GenerationConflictError
        when it is no longer at ``expected`` (another rebuild won)."""
        ...


class Staging(Protocol):
    """Vectors of another pack kept beside the serving ones until a re-embedding swaps them in."""

    def stage(self, gid: int, image_id: int, pack: str, vectors: dict[int, np.ndarray]) -> None: ...

    def staged_images(self, gid: int, pack: str) -> set[int]:
        """Images already re-embedded with ``pack``, so a resumed run skips them."""
        ...

    def snapshot(self, gid: int, pack: str) -> StagedSnapshot: ...

    def swap(self, gid: int, pack: str, dim: int, since_seq: int, generation: int) -> GalleryRecord:
        """Replace every face vector by its staged one, the gallery's pack and its index
        generation (to ``generation + 1``) in one atomic write. Faces the new pack did not
        find again are removed and logged. StagingIncompleteError when a face was added
        after ``since_seq``; GenerationConflictError when the generation moved."""
        ...


class SecretTable(Protocol):
    """The service's own secrets (the key that signs photo links), shared by every process and
    replica that opens this catalog, and kept with it (in a backup too)."""

    def get(self, name: str) -> bytes | None: ...

    def setdefault(self, name: str, value: bytes) -> bytes:
        """Store ``value`` unless a secret of that name is stored; returns the stored one, so
        every process that does this at once ends up with the same secret."""
        ...

    def replace(self, name: str, value: bytes) -> None:
        """Store ``value`` in place of the secret of that name (a rotation)."""
        ...


class Catalog(Protocol):
    keys: KeyTable
    images: ImageTable
    log: ChangeLog
    staging: Staging
    secrets: SecretTable

    def ping(self) -> None:
        """Raise when the catalog cannot answer a read (for readiness checks)."""
        ...

    def backup(self, dest: Path) -> set[str]:
        """Write a consistent copy of the whole catalog, compacted, into the empty folder ``dest``
        while writes go on; returns the photo file names its images name. (A database server
        has its own backup tools: a backend of one raises NotImplementedError.)"""
        ...

    def opener(self) -> Callable[[], Catalog]:
        """A picklable callable that opens this same catalog in another process."""
        ...

    def close(self) -> None: ...
