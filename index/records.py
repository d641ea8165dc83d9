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

from .filters import DEFAULT_COLLECTION

ADD = b"+"
REMOVE = b"-"
# An image's metadata or collection changed: logged for each of its faces by a catalog whose
# vector backend holds them beside the vectors (``OutboxCatalog``); the faces themselves stay.
UPDATE = b"~"


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
    collection: str = DEFAULT_COLLECTION  # records written before collections existed are in the default one

    def face(self, face_id: int) -> FaceInfo:
        return next(face for face in self.faces if face.id == face_id)


@dataclass
class NewFace:
    """A face to store: where it is, how sure the detector was, its embedding, and the person
    it clearly belongs to (found before the add: it joins that person in the add's own write,
    unless the person is gone by then)."""

    bbox: list[float]
    score: float
    embedding: np.ndarray
    person: int | None = None


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
    collection: str = DEFAULT_COLLECTION


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
class Placed:
    """A live face as a vector backend holds it beside its vector: its image, its box, and what
    a scope reads of its image (metadata, collection, creation time)."""

    image: int
    bbox: list[float]
    metadata: dict[str, Any]
    collection: str
    created_at: str

    @classmethod
    def of(cls, record: ImageRecord, face: FaceInfo) -> Placed:
        return cls(record.id, face.bbox, record.metadata, record.collection, record.created_at)


@dataclass(frozen=True)
class Pending:
    """The next changes of a gallery's outbox, with what the faces still live look like now."""

    pack: str
    dim: int
    changes: list[tuple[int, str, int]]  # (seq, op, face) in seq order
    live: dict[int, tuple[Placed, np.ndarray]]  # face -> (where it is, its vector), for the faces still stored

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


@dataclass(frozen=True)
class CollectionCount:
    """One collection of a gallery: how many images and faces it holds."""

    images: int
    faces: int


CHUNK_BITS = 16  # an id set is kept in chunks of 2**16 consecutive ids
CHUNK_BYTES = (1 << CHUNK_BITS) // 8
_LOW = (1 << CHUNK_BITS) - 1


def ascending_unique(ids: np.ndarray) -> np.ndarray:
    """The distinct ids in ascending order (numpy's own ``unique`` hashes, many times slower on
    the sorted ids this mostly meets)."""
    ids = ids if np.all(ids[1:] >= ids[:-1]) else np.sort(ids)
    return ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids


def _runs(ascending: np.ndarray) -> list[tuple[int, int, int]]:
    """(chunk number, start, stop) of each run of ids in the same chunk, in ascending ids: found
    by a binary search per chunk, not a pass over the ids."""
    if not len(ascending):
        return []
    low, high = int(ascending[0]) >> CHUNK_BITS, int(ascending[-1]) >> CHUNK_BITS
    if high - low > len(ascending):  # ids spread thinly: one pass is cheaper
        numbers = ascending >> CHUNK_BITS
        starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])
        return list(
            zip(numbers[starts].tolist(), starts.tolist(), np.r_[starts[1:], len(ascending)].tolist(), strict=True)
        )
    numbers = np.arange(low, high + 2, dtype=np.int64)
    bounds = np.searchsorted(ascending, numbers << CHUNK_BITS)
    return [
        (number, start, stop)
        for number, start, stop in zip(numbers[:-1].tolist(), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        if stop > start
    ]


class IdSet:
    """A set of image or face ids as bitmaps of 65,536 consecutive ids each (the chunks that hold
    none are left out): cheap to intersect, join and count at millions of ids, and to ask about
    millions of ids at once (``contains``). Bit ``i`` of a chunk is bit ``i % 8`` of byte ``i // 8``."""

    def __init__(self, chunks: dict[int, np.ndarray] | None = None) -> None:
        self.chunks = {number: bits for number, bits in (chunks or {}).items() if bits.any()}
        self._count: int | None = None

    @classmethod
    def of(cls, ids: np.ndarray | list[int]) -> IdSet:
        ids = ascending_unique(np.asarray(ids, np.int64))
        chunks: dict[int, np.ndarray] = {}
        for number, start, stop in _runs(ids):
            mask = np.zeros(1 << CHUNK_BITS, bool)
            mask[ids[start:stop] & _LOW] = True
            chunks[number] = np.packbits(mask, bitorder="little")
        return cls(chunks)

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = int(sum(int(np.bitwise_count(bits).sum()) for bits in self.chunks.values()))
        return self._count

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return bool(self.chunks)

    def ids(self) -> np.ndarray:
        """Every id, ascending."""
        parts = [
            np.flatnonzero(np.unpackbits(self.chunks[number], bitorder="little")) + (number << CHUNK_BITS)
            for number in sorted(self.chunks)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def bitmap(self, most_bytes: int) -> np.ndarray | None:
        """The set as one bitmap over ids 0 .. its largest, its chunks laid end to end (FAISS's
        ``IDSelectorBitmap`` layout); None when that would take more than ``most_bytes``."""
        if not self.chunks:
            return np.zeros(0, np.uint8)
        last = max(self.chunks)
        if (last + 1) * CHUNK_BYTES > most_bytes:
            return None
        bits = np.zeros((last + 1) * CHUNK_BYTES, np.uint8)
        for number, chunk in self.chunks.items():
            bits[number * CHUNK_BYTES : (number + 1) * CHUNK_BYTES] = chunk
        return bits

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each of ``ids`` is in the set; fastest for ids in ascending order (a base
        file's), which are taken a chunk at a time."""
        ids = np.asarray(ids, np.int64)
        found = np.zeros(len(ids), bool)
        if not self.chunks or not len(ids):
            return found
        order = None if np.all(ids[1:] >= ids[:-1]) else np.argsort(ids, kind="stable")
        ascending = ids if order is None else ids[order]
        held = np.zeros(len(ids), bool)
        for number, start, stop in _runs(ascending):
            if number in self.chunks:
                bits = np.unpackbits(self.chunks[number], bitorder="little").view(bool)
                held[start:stop] = bits[ascending[start:stop] & _LOW]
        if order is None:
            return held
        found[order] = held
        return found

    def __and__(self, other: IdSet) -> IdSet:
        return IdSet({n: bits & other.chunks[n] for n, bits in self.chunks.items() if n in other.chunks})

    def __or__(self, other: IdSet) -> IdSet:
        joined = dict(self.chunks)
        for n, bits in other.chunks.items():
            joined[n] = joined[n] | bits if n in joined else bits
        return IdSet(joined)

    def __sub__(self, other: IdSet) -> IdSet:
        return IdSet({n: bits & ~other.chunks[n] if n in other.chunks else bits for n, bits in self.chunks.items()})

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdSet)
            and self.chunks.keys() == other.chunks.keys()
            and all(np.array_equal(bits, other.chunks[n]) for n, bits in self.chunks.items())
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdSet({self.count} ids)"


# -- persons ------------------------------------------------------------------------------

EVERY_PERSON = 0  # ``FaceAssignment.kept_out`` of a face whose person a user deleted
SORT_KEY_CHARS = 120  # of a name, for ordering: a key of this many characters fits an LMDB key


@dataclass
class PersonRecord:
    """A person of one gallery: a name (empty for a group a grouping run found), metadata, its
    faces (at most one of each image, so ``faces`` is also its number of photos) and the face
    that shows it (``cover``: the largest, most surely detected of them)."""

    id: int
    gallery: int
    name: str
    metadata: dict[str, Any]
    faces: int
    cover: int | None
    edited: bool  # a user made, named, merged, split it or moved faces in or out: no run merges it away
    created_at: str

    @property
    def sort_key(self) -> str:
        """Where a named person is listed: by name, whatever its case."""
        return self.name.casefold()[:SORT_KEY_CHARS]


@dataclass(frozen=True)
class FaceAssignment:
    """Where a face stands: in a person (put there by a grouping run, the add, or a user), or
    taken out of one by a user. A face no user or run ever placed has no assignment."""

    person: int | None
    by_user: bool = False
    # with no person: the person a user took it out of, which no run puts it back in
    # (``EVERY_PERSON``: a user deleted its person, and no run groups it again)
    kept_out: int | None = None

    @property
    def groupable(self) -> bool:
        """A grouping run may put the face in a person (some person)."""
        return self.person is None and self.kept_out != EVERY_PERSON


@dataclass(frozen=True)
class Source:
    """Where the faces of a move must be when it commits: in ``person``, or in no person (None)."""

    person: int | None


@dataclass(frozen=True)
class NewGroup:
    """A grouping run's new (unnamed) person, made of faces in no person."""

    faces: list[int]


@dataclass(frozen=True)
class Attach:
    """A grouping run's faces (in no person) joining an existing person."""

    person: int
    faces: list[int]


@dataclass(frozen=True)
class Fold:
    """A grouping run's persons (none of them edited by a user) folded into another."""

    into: int
    persons: list[int]


GroupOp = NewGroup | Attach | Fold


@dataclass
class Applied:
    """What a commit of a run's operations did, and what it skipped because the catalog had
    moved on since the run read it (a user's edit, a deleted image, another run)."""

    created: list[int] = field(default_factory=list)  # new persons
    attached: int = 0  # faces put in persons (new or existing)
    folded: int = 0  # persons folded into others
    skipped: int = 0  # faces the operations could no longer place, and persons they could not fold

    def add(self, other: Applied) -> None:
        self.created += other.created
        self.attached += other.attached
        self.folded += other.folded
        self.skipped += other.skipped


@dataclass(frozen=True)
class GroupingState:
    """A gallery's grouping: faces added since the last run that no person took at once, the
    last face id that run saw (faces after it are new to the next), and the faces in persons."""

    pending: int = 0
    watermark: int = 0
    placed: int = 0


@dataclass(frozen=True)
class Forgotten:
    """What forgetting a person removed: its faces (from the catalog and, through the change
    log, from every vector index), the images left with no face (deleted whole), and the
    images that only lost faces."""

    faces: list[int]
    deleted: list[ImageRecord]
    changed: list[int]


# -- jobs ---------------------------------------------------------------------------------

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass
class JobRecord:
    """A long operation on one gallery that any process may run and any may report on: its
    state, its progress, and who runs it until when (a lease the runner keeps renewing)."""

    id: int
    gallery: int
    kind: str
    state: str
    params: dict[str, Any] = field(default_factory=dict)
    done: int = 0
    total: int = 0
    error: str | None = None
    worker: str | None = None
    lease_until: float = 0.0  # seconds since the epoch
    created_at: str = ""
    updated_at: str = ""

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)
