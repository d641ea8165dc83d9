"""The catalog: the source of truth for keys, galleries, images, embeddings and the change log.

Every backend implements these protocols (``index.lmdb`` embedded, ``index.postgres`` in
cluster mode) and passes ``tests/contract``. Each method is one
atomic, durable operation: what a caller was told is stored survives a crash of any
process, and what it was not told is absent as a whole. Galleries are isolated: every
method that takes a gallery id ``gid`` answers an image of another gallery as absent.

The change log numbers every face added or removed by the gallery's ``seq``; any process
keeps a vector index in step by replaying what it has not seen (``ChangeLog.since``), and
a snapshot says which seq its vectors include, so an index built from it can be brought up
to date the same way.

A vector backend that lives in a server of its own (Milvus) is fed through the catalog's
outbox instead: ``OutboxCatalog`` is the catalog it needs, a ``Catalog`` that also records
how far each vector collection has applied the change log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .filters import EVERYTHING, Scope
from .records import (
    Applied,
    ChangeBatch,
    CollectionCount,
    FaceAssignment,
    Forgotten,
    GalleryRecord,
    GroupingState,
    GroupOp,
    IdSet,
    ImageRecord,
    JobBatch,
    JobRecord,
    KeyRecord,
    NewImage,
    Pending,
    PersonRecord,
    Progress,
    Snapshot,
    Source,
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
        """Store the image with all its faces and log them, each face with the person it names
        if that person still exists; PackMismatchError when the gallery holds another pack's
        embeddings."""
        ...

    def add_many(self, gid: int, images: list[NewImage]) -> list[ImageRecord]:
        """``add`` of several images in one atomic write (all or none; for bulk loads)."""
        ...

    def get(self, gid: int, image_id: int) -> ImageRecord | None: ...

    def get_many(self, gid: int, image_ids: list[int]) -> dict[int, ImageRecord]: ...

    def page(self, gid: int, offset: int, limit: int, scope: Scope = EVERYTHING) -> tuple[list[ImageRecord], int]:
        """One page of the gallery's images in ``scope``, in ascending id order, and how many
        images the scope holds."""
        ...

    def ids(self, gid: int) -> list[int]:
        """Every image id of the gallery, ascending."""
        ...

    def update(
        self, gid: int, image_id: int, metadata: dict[str, Any] | None = None, collection: str | None = None
    ) -> ImageRecord | None:
        """Replace the image's metadata, move it to another collection, or both (None: unchanged)."""
        ...

    def collections(self, gid: int) -> dict[str, CollectionCount]:
        """The gallery's collections that hold an image, by name."""
        ...

    def delete_collection(self, gid: int, name: str, limit: int) -> list[ImageRecord]:
        """Delete up to ``limit`` images of the collection in one write (as ``delete``); returns
        those deleted, none once the collection is empty."""
        ...

    def select(self, gid: int, scope: Scope) -> IdSet:
        """The live faces of the gallery's images in ``scope``: from the metadata index where it
        answers, from the images' metadata where it does not (a key not indexed yet)."""
        ...

    def delete(self, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        """Delete the gallery's images among ``image_ids`` with their faces (logged), taking the
        faces out of their persons (a person left with none is removed); returns those deleted."""
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


class MetadataIndex(Protocol):
    """Which metadata keys of a gallery are indexed for filters (its collections and creation
    times always are, once built). Filtering on any other key works too, by reading the
    metadata of every image the rest of the filter leaves."""

    def keys(self, gid: int) -> dict[str, bool]:
        """Each indexed path of the gallery, and whether its index is complete (else being built)."""
        ...

    def start(self, gid: int, paths: Iterable[str], most: int) -> list[str]:
        """Index ``paths`` the gallery does not index yet, while it indexes at most ``most``
        metadata keys; the paths whose index must now be built over its images (``build``)."""
        ...

    def build(self, gid: int, path: str, batches: int | None = None) -> bool:
        """Index ``path`` over the gallery's images, a batch per write, ``batches`` of them at most
        (None: to the end); True once every image is indexed. Resumable: a build stopped
        half-way goes on from where it got to, and writes meanwhile are indexed too."""
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


class PersonTable(Protocol):
    """The persons of each gallery, read: who they are, and which face of which image each holds.

    A face is in at most one person, and a person holds at most one face of an image."""

    def get(self, gid: int, person_id: int) -> PersonRecord | None: ...

    def get_many(self, gid: int, person_ids: list[int]) -> dict[int, PersonRecord]: ...

    def page(self, gid: int, offset: int, limit: int) -> tuple[list[PersonRecord], int]:
        """One page of the gallery's persons, named ones first by name (``sort_key``, then id),
        then the unnamed by most faces (then id); and how many persons the gallery has."""
        ...

    def of_faces(self, gid: int, face_ids: list[int]) -> dict[int, FaceAssignment]:
        """The assignment of each face among ``face_ids`` that has one."""
        ...

    def images(self, gid: int, person_id: int, offset: int, limit: int) -> list[tuple[int, int]]:
        """(image id, the person's face in it), newest image (highest id) first."""
        ...


class PersonEdits(Protocol):
    """A user's changes to persons. Each is one transaction that checks what it changes as it
    finds it (so of two edits racing for one face, the second sees the first), and marks the
    persons it changes as edited. UnknownPersonsError and UnknownFacesError name ids that are
    not the gallery's; AssignmentConflictError refuses what would put two faces of one image
    in a person, or move a face that is not where the caller said; either way nothing changes."""

    def create(
        self, gid: int, name: str, metadata: dict[str, Any], face_ids: list[int], created_at: str
    ) -> PersonRecord:
        """A person of these faces, taken from whatever person held them."""
        ...

    def update(
        self, gid: int, person_id: int, name: str | None, metadata: dict[str, Any] | None
    ) -> PersonRecord | None:
        """Change what is given; None when there is no such person."""
        ...

    def delete(self, gid: int, person_id: int) -> bool:
        """Remove the person; its faces stay, in no person, and no run groups them again."""
        ...

    def merge(self, gid: int, into: int, person_ids: list[int]) -> PersonRecord:
        """Fold the persons into ``into`` (which keeps its name, or takes the first of theirs)."""
        ...

    def move(self, gid: int, person_id: int, face_ids: list[int], source: Source | None) -> PersonRecord:
        """Put the faces in the person, from wherever they are, or only from ``source``."""
        ...

    def take_out(self, gid: int, person_id: int, face_ids: list[int]) -> PersonRecord | None:
        """Take the faces, which must be the person's, out of it (no run puts them back in it);
        the person, or None when it held nothing else and is removed."""
        ...

    def forget(self, gid: int, person_id: int) -> Forgotten | None:
        """Delete the person and its faces (logged as removed, for every vector index); an
        image left with no face is deleted whole. None when there is no such person."""
        ...


class Grouping(Protocol):
    """What a grouping run reads and writes: every face's assignment, the faces waiting since
    the last run, and the run's operations, committed a batch at a time."""

    def state(self, gid: int) -> GroupingState: ...

    def assignments(self, gid: int) -> dict[int, FaceAssignment]:
        """Every face of the gallery that has an assignment."""
        ...

    def commit(self, gid: int, ops: list[GroupOp], min_faces: int, created_at: str) -> Applied:
        """Apply what still holds of ``ops`` in one transaction: a face joins a person only if it
        is in none and may be grouped (not kept out of that person), a person takes no second
        face of an image, a new person needs ``min_faces`` such faces, and only persons no user
        edited are folded (into any person). What no longer holds is skipped, never forced."""
        ...

    def finish(self, gid: int, watermark: int, pending: int) -> GroupingState:
        """A run that read ``pending`` waiting faces and faces up to ``watermark`` is over."""
        ...

    def due(self, pending: int) -> list[int]:
        """The galleries with at least ``pending`` faces waiting for a run."""
        ...


class JobRecords(Protocol):
    """Long operations on a gallery that any process may run and any may report on (``GET
    /jobs/<id>``). A runner claims a job with a lease and renews it as it reports progress; a
    runner that dies lets its lease run out, and the next claim takes the job over."""

    def submit(self, gid: int, kind: str, params: dict[str, Any], created_at: str) -> JobRecord:
        """A new queued job, or the gallery's job of that kind still queued or running."""
        ...

    def get(self, job_id: int) -> JobRecord | None: ...

    def claim(self, job_id: int, worker: str, lease_seconds: float) -> JobRecord | None:
        """The job, now running under ``worker``'s lease, if it was queued or its lease ran out."""
        ...

    def report(self, job_id: int, worker: str, done: int, total: int, lease_seconds: float) -> bool:
        """Record progress and renew the lease; False when the job is no longer ``worker``'s."""
        ...

    def end(self, job_id: int, worker: str, state: str, error: str | None) -> bool:
        """Done or failed; False when the job is no longer ``worker``'s."""
        ...

    def claimable(self) -> list[JobRecord]:
        """Jobs queued, or running under a lease that ran out."""
        ...


class BulkJobs(Protocol):
    """Bulk work (an import, a re-embedding) split into batches that workers claim.

    A catalog several machines share lets every worker started on the same job take its
    batches, each under a lease that a killed worker lets run out; an embedded catalog hands
    every batch of a job to the one process that planned it, and forgets the job once it is
    done. Either way a batch's work must be idempotent: it may be done twice."""

    @property
    def shared(self) -> bool:
        """Workers in other processes (on other machines) may join a job."""
        ...

    def plan(self, job: str, batches: list[list[Any]]) -> int:
        """Create the job's batches unless it is under way already (a second worker joins it);
        its batch count."""
        ...

    def claim(self, job: str, worker: str, lease_seconds: float) -> JobBatch | None:
        """The next batch nobody holds (or whose holder's lease ran out), now ``worker``'s;
        None when every batch is done or held."""
        ...

    def finish(self, batch: JobBatch, worker: str) -> bool:
        """Mark the batch done; False when the lease was lost to another worker meanwhile."""
        ...

    def remaining(self, job: str) -> tuple[int, int]:
        """(batches not done, batches in all)."""
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
    # read-only members: a backend's own table classes stand for the protocols
    @property
    def keys(self) -> KeyTable: ...
    @property
    def images(self) -> ImageTable: ...
    @property
    def metadata(self) -> MetadataIndex: ...
    @property
    def log(self) -> ChangeLog: ...
    @property
    def staging(self) -> Staging: ...
    @property
    def jobs(self) -> BulkJobs: ...
    @property
    def persons(self) -> PersonTable: ...
    @property
    def person_edits(self) -> PersonEdits: ...
    @property
    def grouping(self) -> Grouping: ...
    @property
    def job_records(self) -> JobRecords: ...
    @property
    def component(self) -> str:
        """What readiness checks call this catalog (``lmdb``, ``postgres``)."""
        ...

    @property
    def secrets(self) -> SecretTable: ...

    def ping(self) -> None:
        """Raise when the catalog cannot answer a read (for readiness checks)."""
        ...

    def backup(self, dest: Path) -> set[str]:
        """Write a consistent copy of the whole catalog (as one transaction sees it) into the
        empty folder ``dest`` while writes go on; returns the photo file names its images name.
        ``index.backend.restore_catalog`` brings it back into an empty catalog of the same kind.
        What is derived (vector indexes, their progress through the outbox) and what is
        transient (bulk jobs' leases) is left out."""
        ...

    def opener(self) -> Callable[[], Catalog]:
        """A picklable callable that opens this same catalog in another process."""
        ...

    def close(self) -> None: ...


class OutboxApply(Protocol):
    """One transaction holding a gallery's apply lock: read the next changes, apply them to the
    vector backend, record how far that got; nothing is recorded if the block fails."""

    def next_batch(self, limit: int) -> Pending | None:
        """The changes after what the gallery's current collection has applied (None: no pack yet)."""
        ...

    def record(self, collection: str, seq: int) -> None:
        """The collection holds the gallery's changes up to ``seq``."""
        ...


class Outbox(Protocol):
    """The change log read as an outbox: how far each vector collection has applied it.

    A write commits its changes with its record (the log is the outbox); a vector backend
    applies them in seq order, idempotently, under the gallery's apply lock, so two appliers
    never interleave on a gallery."""

    def progress(self, gid: int, collection: str) -> Progress: ...

    def lagging(self) -> list[tuple[int, int]]:
        """(gallery, head seq) of every gallery some change of which its collection has not applied."""
        ...

    def applying(self, gid: int, wait: bool = True) -> AbstractContextManager[OutboxApply | None]:
        """Hold the gallery's apply lock for one transaction (None at once when it is taken and
        not ``wait``)."""
        ...

    def trim_applied(self, older_than_seconds: float) -> int:
        """Drop changes every collection holding the gallery applied more than a while ago; how many."""
        ...

    def mark(self, gid: int, collection: str, seq: int) -> None:
        """The collection holds the gallery as of ``seq`` (it was just filled from a snapshot)."""
        ...

    def forget(self, gid: int, collection: str) -> None:
        """The collection no longer holds the gallery (a re-embedding moved it to another)."""
        ...

    def exclusive(self, gid: int, wait: bool) -> AbstractContextManager[bool]:
        """Hold the gallery against rebuilds and re-embeddings by any process on any machine;
        yields False at once if taken and not ``wait``. A holder that dies lets go."""
        ...


class CatalogImport(Protocol):
    """Records copied in from another catalog with their ids kept (a migration into cluster
    mode): clients know their images by id, and photo files are named by gallery."""

    def present(self, gid: int) -> set[int]:
        """The images of the gallery copied already."""
        ...

    def put_key(self, key: KeyRecord, used: int, gallery: GalleryRecord) -> None:
        """The key, its request count and its gallery (an existing key's fields are replaced)."""
        ...

    def put_images(self, gid: int, records: list[ImageRecord], vectors: dict[int, np.ndarray]) -> None:
        """The images with their faces' embeddings and change-log entries, in one transaction."""
        ...

    def put_persons(
        self, gid: int, persons: list[PersonRecord], assignments: dict[int, FaceAssignment], state: GroupingState
    ) -> None:
        """The gallery's persons as they are (ids, names, metadata, covers, edited), every face's
        assignment (a user's placements and the faces kept out of a person or of every person)
        and where its grouping stands, in one transaction, after its images; a gallery whose
        persons were copied already is skipped."""
        ...

    def finish(self) -> None:
        """Move the id sequences past everything copied."""
        ...


class CountedImages(ImageTable, Protocol):
    """The image table of a catalog whose indexes can say cheaply how large a scope is."""

    def count_upto(self, gid: int, scope: Scope, most: int) -> int:
        """How many of the gallery's images may be in ``scope`` by their collection and creation
        time, counted up to ``most`` (what the count costs stops there; a scope that names neither
        is ``most``). Metadata terms admit every image: counting them would read the values of
        every image they pass, where these two are columns of the image with an index each."""
        ...


class OutboxCatalog(Catalog, Protocol):
    """A catalog that a vector backend in a server of its own follows through the outbox; its
    search sizes a scope from the catalog (``CountedImages``)."""

    @property
    def images(self) -> CountedImages: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def namespace(self) -> str:
        """This catalog's own, so that two catalogs never share a vector collection."""
        ...

    @property
    def importer(self) -> CatalogImport: ...
