"""One LMDB environment and the few primitives every table of the catalog is built from.

Every write is committed with fsync before its caller returns, so what a caller was told is
stored survives a crash, and what it was not told is absent as a whole. Writes that arrive
while another is committing share the next commit (group commit): each runs in a nested
transaction of its own, so one that fails leaves the others whole, and each caller returns
only once the commit that holds its write is on disk. A full map grows itself.
Gallery-keyed tables share one layout (8-byte gallery id, then the rest of the key), so a
gallery's rows are one prefix walk.
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import lmdb

from ..errors import StorageError
from ..locks import ReadWriteLock
from ..records import REMOVE, GalleryRecord
from .encoding import decode_gallery, encode, encode_change, pair, u64

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

# Reads in flight when many rows are read by key. A search re-scores a hundred faces read at
# random from a catalog that may be far larger than the page cache; a disk serves several reads
# at once faster than the same reads one after another, and py-lmdb lets go of the GIL while it
# looks a key up and touches its pages. Handing the reads out to threads costs more than it
# saves when their pages are cached, so reads are spread only while recent ones took a page from
# the disk (a major page fault) for more than one key in ten (the measurements behind these
# constants: docs/benchmarks/2026-12-04-large-galleries.md).
READERS = 8
SPREAD_FROM = 32  # fewer keys are read by the calling thread: handing them out costs more than it saves
COLD = 0.1  # disk reads per key of recent reads by key above which they are spread
RECENT = 0.2  # weight of the latest read in that estimate


def disk_reads() -> int:
    """Pages this process has read from the disk on a fault so far, all threads together."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt


DATABASES = (
    "meta",
    "keys",
    "usage",
    "galleries",
    "images",
    "gallery_images",
    "faces",
    "changes",
    "imported",  # (gallery, content hash) -> image id (0: no face), for resumable bulk imports
    "staged",  # (gallery, face) -> a re-embedded face waiting for the swap
    "staged_images",  # (gallery, image) -> {"pack", "faces"}: which faces were re-embedded
    "persons",  # (gallery, person) -> the person's record
    "person_order",  # (gallery, named or not, name or faces, person) -> person: how persons are listed
    "person_images",  # (gallery, person, image) -> (the person's face in it, how well it shows the person)
    "face_persons",  # (gallery, face) -> (person, by a user, kept out of, image): a face's assignment
    "person_state",  # gallery -> {"persons", "pending", "watermark"}: counts and where grouping stands
    "jobs",  # job id -> the job's record (GET /jobs/<id>)
    # the metadata index (attributes.py): ids holding a value at a path, counts per value, indexed paths
    "postings",
    "value_counts",
    "filter_keys",
)


@dataclass
class _Pending:
    """One caller's write waiting for a commit: its function, then its result or its error."""

    fn: Callable[[lmdb.Transaction], object]
    done: bool = False
    result: object = None
    error: BaseException | None = None


def _failed(exc: lmdb.Error) -> StorageError:
    failed = StorageError(f"LMDB write failed: {exc}")
    failed.__cause__ = exc
    return failed


class Environment:
    def __init__(self, path: Path, map_size: int = 1 << 30) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        # No read-ahead on the map: a search reads a few hundred faces at random, and each page fault
        # would pull in the disk's read_ahead_kb around it, many times the page it wanted (measured:
        # docs/benchmarks/2026-12-01-large-galleries.md). Scans lose little: the rebuild they feed is
        # bound by its CPU.
        self.env = lmdb.open(
            str(path), map_size=map_size, max_dbs=len(DATABASES), max_readers=512, sync=True, readahead=False
        )
        self.db = {name: self.env.open_db(name.encode()) for name in DATABASES}
        self._resize = ReadWriteLock()  # growing the map needs every transaction of this process closed
        self._writer = threading.Lock()  # held by the thread committing this process's queued writes
        self._queued: list[_Pending] = []  # writes waiting for the next commit, under _queue_lock
        self._queue_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="catalog-read")  # threads start on first use
        self._cold = 1.0  # disk reads per key of recent reads by key: taken as cold until measured
        self.spread_above = COLD  # this handle's threshold (a benchmark compares never, always, and this)

    @property
    def map_size(self) -> int:
        return self.env.info()["map_size"]

    def close(self) -> None:
        self._readers.shutdown()
        self.env.close()

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self.reading() as txn:
            return fn(txn)

    @contextmanager
    def reading(self) -> Iterator[lmdb.Transaction]:
        """A read transaction: one consistent view of every table for as long as it is open."""
        with self._resize.read(), self.env.begin() as txn:
            yield txn

    def read_spread(self, fn: Callable[[lmdb.Transaction, list[K]], dict[K, V]], keys: list[K]) -> dict[K, V]:
        """``fn`` over ``keys``, split among the reader threads while reads come from the disk,
        each part in a read transaction of its own, so that the disk serves several page reads
        at once. The parts may see different commits: for callers that read rows by key and can
        take each row as of any recent commit."""
        before = disk_reads()
        if len(keys) < SPREAD_FROM or self._cold < self.spread_above:
            found = self.read(lambda txn: fn(txn, keys))
        else:
            size = -(-len(keys) // READERS)
            parts = self._readers.map(
                lambda part: self.read(lambda txn: fn(txn, part)),
                (keys[start : start + size] for start in range(0, len(keys), size)),
            )
            found = {key: value for part in parts for key, value in part.items()}
        if keys:  # other threads' faults count too, and request threads race to update: an estimate will do
            self._cold += RECENT * ((disk_reads() - before) / len(keys) - self._cold)
        return found

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in a durable write transaction, growing the map when it is full; returns
        once the commit that holds it is on disk. Writes of other threads queued meanwhile are
        committed with it: whichever thread takes the writer's lock commits them all."""
        pending = _Pending(fn)
        with self._queue_lock:
            self._queued.append(pending)
        with self._writer:
            if not pending.done:  # else the thread before committed it while this one waited
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._commit(batch)
        if pending.error is not None:
            raise pending.error
        return cast(T, pending.result)  # what fn returned

    def _commit(self, batch: list[_Pending]) -> None:
        """One transaction for the whole batch, each write nested in it; every write is done
        (with its result or its error) when this returns."""
        while True:
            try:
                with self._resize.read(), self.env.begin(write=True) as txn:
                    for pending in batch:
                        pending.result, pending.error = None, None
                        try:
                            with self.env.begin(write=True, parent=txn) as nested:
                                pending.result = pending.fn(nested)
                        except lmdb.MapFullError:
                            raise
                        except lmdb.Error as exc:
                            pending.error = _failed(exc)
                        except Exception as exc:  # this write's own failure: the others go on
                            pending.error = exc
                break
            except lmdb.MapFullError:
                with self._resize.write():
                    self.env.set_mapsize(self.map_size * 2)
            except lmdb.Error as exc:  # disk full or failing: the transaction was aborted whole
                for pending in batch:
                    pending.error = _failed(exc)
                break
            except BaseException as exc:  # nothing of the batch was committed
                for pending in batch:
                    pending.error = exc
                break
        for pending in batch:
            pending.done = True

    # -- primitives shared by the tables ---------------------------------------------

    def walk(
        self, txn: lmdb.Transaction, table: str, prefix: bytes, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every row whose key starts with ``prefix``, from ``start`` on, in order."""
        cursor = txn.cursor(db=self.db[table])
        if not cursor.set_range(start or prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield key, value

    def walk_back(self, txn: lmdb.Transaction, table: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every row whose key starts with ``prefix``, last first."""
        cursor = txn.cursor(db=self.db[table])
        end = int.from_bytes(prefix, "big") + 1  # the first key past the prefix's rows, if there is one
        if end < 1 << (8 * len(prefix)) and cursor.set_range(end.to_bytes(len(prefix), "big")):
            found = cursor.prev()
        else:
            found = cursor.last()
        while found and cursor.key().startswith(prefix):
            yield cursor.key(), cursor.value()
            found = cursor.prev()

    def clear(
        self, txn: lmdb.Transaction, table: str, prefix: bytes, last: bytes | None = None, limit: int | None = None
    ) -> int:
        """Delete the rows whose key starts with ``prefix`` (those up to ``last`` only, if given;
        the first ``limit`` only, if given); how many were deleted."""
        cursor = txn.cursor(db=self.db[table])
        deleted = 0
        if not cursor.set_range(prefix):
            return deleted
        while cursor.key().startswith(prefix) and (last is None or cursor.key() <= last) and deleted != limit:
            if not cursor.delete():
                break
            deleted += 1
        return deleted

    def next_id(self, txn: lmdb.Transaction, counter: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive ids from a persistent counter; returns the first."""
        key = counter.encode()
        raw = txn.get(key, db=self.db["meta"])
        first = int(raw) if raw else 1
        txn.put(key, str(first + count).encode(), db=self.db["meta"])
        return first

    def gallery(self, txn: lmdb.Transaction, gid: int) -> GalleryRecord:
        raw = txn.get(u64(gid), db=self.db["galleries"])
        if raw is None:
            raise KeyError(gid)
        return decode_gallery(raw)

    def put_gallery(self, txn: lmdb.Transaction, gid: int, gallery: GalleryRecord) -> None:
        txn.put(u64(gid), encode(gallery), db=self.db["galleries"])

    def log(self, txn: lmdb.Transaction, gid: int, gallery: GalleryRecord, op: bytes, face: int) -> None:
        """Append a change to the gallery's log; the caller stores the gallery record (its seq)."""
        gallery.seq += 1
        txn.put(pair(gid, gallery.seq), encode_change(op, face), db=self.db["changes"])

    def remove_face(self, txn: lmdb.Transaction, gid: int, gallery: GalleryRecord, face: int) -> None:
        txn.delete(pair(gid, face), db=self.db["faces"])
        self.log(txn, gid, gallery, REMOVE, face)
        gallery.faces -= 1
