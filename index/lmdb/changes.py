"""Each gallery's change log in LMDB, and snapshots of its vectors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import lmdb
import numpy as np

from ..catalog import Batch
from ..errors import GenerationConflictError
from ..records import Change, ChangeBatch, GalleryRecord, Snapshot
from .encoding import decode_change, decode_vector, pair, second_of, u64
from .environment import Environment

TRIM_BATCH = 10_000  # log rows deleted per write transaction
TRIM_PAUSE = 0.005  # seconds between them

SCAN_BATCH = 65536


class LmdbChangeLog:
    def __init__(self, env: Environment) -> None:
        self.env = env

    def after(self, txn: lmdb.Transaction, gid: int, seq: int) -> Iterator[Change]:
        """The gallery's logged changes after ``seq``, in order."""
        for key, raw in self.env.walk(txn, "changes", u64(gid), start=pair(gid, seq + 1)):
            op, face = decode_change(raw)
            yield Change(second_of(key), op, face)

    def since(self, gid: int, seq: int) -> ChangeBatch:
        def scan(txn: lmdb.Transaction) -> ChangeBatch:
            first = next((second_of(key) for key, _ in self.env.walk(txn, "changes", u64(gid))), None)
            changes = list(self.after(txn, gid, seq))
            vectors: dict[int, np.ndarray] = {}
            for change in changes:
                found = txn.get(pair(gid, change.face), db=self.env.db["faces"]) if change.is_add else None
                if found is not None:
                    vectors[change.face] = decode_vector(found)
            return ChangeBatch(changes, vectors, first)

        return self.env.read(scan)

    def counts(self, gid: int, seq: int) -> tuple[int, int]:
        def scan(txn: lmdb.Transaction) -> tuple[int, int]:
            changes = list(self.after(txn, gid, seq))
            adds = sum(change.is_add for change in changes)
            return adds, len(changes) - adds

        return self.env.read(scan)

    def trim(self, gid: int, upto: int) -> None:
        """A write transaction per ``TRIM_BATCH`` changes, with a pause between them in which a
        waiting writer takes its turn (a lock just released goes back to the thread that held it
        otherwise): one transaction for the whole trim after a bulk load held every add for
        seconds (measured: docs/benchmarks/2026-12-01-large-galleries.md)."""
        while (
            self.env.write(lambda txn: self.env.clear(txn, "changes", u64(gid), last=pair(gid, upto), limit=TRIM_BATCH))
            == TRIM_BATCH
        ):
            time.sleep(TRIM_PAUSE)

    def snapshot(self, gid: int) -> Snapshot:
        with self.scan(gid, SCAN_BATCH) as (gallery, batches):
            return Snapshot.gather(gallery, batches)

    @contextmanager
    def scan(self, gid: int, batch: int) -> Iterator[tuple[GalleryRecord, Iterator[Batch]]]:
        """One read transaction for the whole walk: LMDB keeps its pages as they were, however
        long the walk takes and whatever is written meanwhile."""
        with self.env.reading() as txn:
            gallery = self.env.gallery(txn, gid)
            yield gallery, self._batches(txn, gid, gallery.dim or 0, batch)

    def _batches(self, txn: lmdb.Transaction, gid: int, dim: int, batch: int) -> Iterator[Batch]:
        ids = np.empty(batch, dtype=np.int64)
        vectors = np.empty((batch, dim), dtype=np.float32)
        count = 0
        for key, raw in self.env.walk(txn, "faces", u64(gid)):
            ids[count] = second_of(key)
            vectors[count] = decode_vector(raw)
            count += 1
            if count == batch:
                yield ids.copy(), vectors.copy()
                count = 0
        if count:
            yield ids[:count].copy(), vectors[:count].copy()

    def commit_generation(self, gid: int, expected: int) -> GalleryRecord:
        def commit(txn: lmdb.Transaction) -> GalleryRecord:
            gallery = self.env.gallery(txn, gid)
            if gallery.index_generation != expected:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            gallery.index_generation += 1
            self.env.put_gallery(txn, gid, gallery)
            return gallery

        return self.env.write(commit)
