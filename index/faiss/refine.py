"""A second, finer code per face that ranks a compressed IVF's candidates before the exact re-rank.

At ten million faces the IVF's 64-byte codes rank too many lookalike strangers above a person's
true neighbours: a high recall would need thousands of candidates re-scored with float vectors
read from a catalog larger than the page cache. So the scan returns thousands of candidates
(cheap with fast-scan codes), a product quantiser of ``code_bytes`` bytes per face over the raw
vector (128: one byte per four dimensions, twice the IVF's) ranks them, and only the best
hundred are read and scored exactly. It was measured before it was built, by a prototype
(``scripts/bench_refine.py``, removed since), and since in the service: the reports are
docs/benchmarks/2026-12-02-second-code-prototype.md and its successors.

A codes file sits beside each IVF base file and is immutable like it: the trained quantiser,
then every face id in ascending order, then the codes in the same order. Every process maps it
read-only, so its pages are shared; the IVF's packed copy labels each face by its row here, so
a candidate's code is read by index.
Checkpoints stream the next file from the mapped one and the overlay, a chunk at a time, so the
codes are never held twice in memory.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from .ivf_file import DURABLE_EVERY

MAGIC = b"FSREFINE"
_HEADER = struct.Struct("<8sQ")  # magic, length of the serialised quantiser
_COUNT = struct.Struct("<Q")
CHUNK = 1 << 16  # faces streamed at a time: a chunk is copied a few times over (8 MB of codes each)
MIN_TRAINING = 256 * 40  # 8-bit codebooks of 256 centroids want this many points (as FAISS asks)
TRAIN_POINTS_PER_CENTROID = 256
TRAIN_ITERATIONS = 10

Chunks = Iterator[tuple[np.ndarray, np.ndarray]]  # (ids ascending, codes in the same order)


BLAS_FROM = 20  # points from which k-means assigns them with BLAS: FAISS's documented default


def train(sample: np.ndarray, code_bytes: int) -> faiss.IndexPQ:
    """A quantiser of ``code_bytes`` 8-bit sub-codes trained on ``sample``.

    Its k-means are many and tiny (4 dimensions, 256 centroids each): this FAISS build assigns
    fewer than ``distance_compute_blas_threshold`` points without BLAS, many times slower than
    with it, and for such small problems a second thread only adds overhead (measured:
    docs/benchmarks/2026-12-02-second-code.md). So training lowers both for the moment."""
    coder = faiss.IndexPQ(sample.shape[1], code_bytes, 8, faiss.METRIC_INNER_PRODUCT)
    coder.pq.cp.niter = TRAIN_ITERATIONS
    coder.pq.cp.max_points_per_centroid = TRAIN_POINTS_PER_CENTROID
    threshold, threads = faiss.cvar.distance_compute_blas_threshold, faiss.omp_get_max_threads()
    faiss.cvar.distance_compute_blas_threshold = BLAS_FROM
    faiss.omp_set_num_threads(1)
    try:
        coder.train(np.ascontiguousarray(sample, dtype=np.float32))
    finally:
        faiss.cvar.distance_compute_blas_threshold = threshold
        faiss.omp_set_num_threads(threads)
    return coder


class RefineCodes:
    """Face ids in ascending order with their codes, and the quantiser that made them."""

    def __init__(self, coder: faiss.IndexPQ, ids: np.ndarray, codes: np.ndarray) -> None:
        self.coder = coder
        self.ids = ids
        self.codes = codes

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """What it holds, counting the mapped file as if every page were resident."""
        return self.count * (8 + self.code_bytes)

    @property
    def code_bytes(self) -> int:
        return int(self.coder.pq.M)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return encode(self.coder, vectors)

    def ranked(self, queries: np.ndarray, rows: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
        """The face ids of each query's ``keep`` best of its candidate ``rows`` by their codes,
        best first, with the scores the codes give them; -1 (and -inf) pad."""
        ranked = np.full((len(queries), keep), -1, np.int64)
        scores = np.full((len(queries), keep), -np.inf, np.float32)
        for number, (query, found) in enumerate(zip(queries, rows, strict=True)):
            best, scored = self.best(query, found, keep)
            ranked[number, : len(best)] = self.ids[best]
            scores[number, : len(best)] = scored
        return ranked, scores

    def best(self, query: np.ndarray, rows: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``keep`` of ``rows`` (-1 padded) whose codes score highest for ``query`` (one unit
        vector), best first, as rows, and their scores."""
        rows = np.sort(rows[rows >= 0])  # in file order: the codes are read going forward
        # a scorer per query: FAISS scores codes it holds, and searches run in several threads
        return best_of(self.scorer(rows), rows, query, keep)

    def scorer(self, rows: np.ndarray) -> faiss.IndexPQ:
        """An index holding a copy of the codes of ``rows`` (ascending), in their order."""
        scorer = faiss.IndexPQ(self.coder.d, self.code_bytes, 8, faiss.METRIC_INNER_PRODUCT)
        scorer.pq = self.coder.pq
        scorer.is_trained = True
        scorer.add_sa_codes(np.ascontiguousarray(self.codes[rows]))
        return scorer

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The rows of these faces in the file; a face it does not hold means the file is not the
        one its IVF was written with."""
        position, known = self.find(np.asarray(ids, np.int64))
        if not np.all(known):
            raise ValueError(f"the codes file holds no code for face {np.asarray(ids)[~known][0]}")
        return position

    def rows_of_every(self, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids``, which must be every face of the file in any order: one sort, far
        cheaper than a binary search per face at ten million faces."""
        order = np.argsort(ids, kind="stable")  # an IVF's lists are each in order: a merge of runs
        if not np.array_equal(ids[order], self.ids):
            raise ValueError("the codes file does not hold the same faces as its IVF")
        rows = np.empty(len(ids), np.int64)
        rows[order] = np.arange(len(ids))
        return rows

    def find(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of the ``wanted`` ids is in the file, and whether it is there."""
        return find(self.ids, wanted)

    @classmethod
    def open(cls, path: Path) -> RefineCodes:
        """A codes file, memory-mapped read-only (as plain arrays over the mapping: ``np.memmap``
        made each lookup of a search several times slower)."""
        with open(path, "rb") as handle:
            magic, length = _HEADER.unpack(handle.read(_HEADER.size))
            if magic != MAGIC:
                raise ValueError(f"{path} is not a codes file")
            coder = faiss.deserialize_index(np.frombuffer(handle.read(_padded(length))[:length], dtype=np.uint8))
            (count,) = _COUNT.unpack(handle.read(_COUNT.size))
            ids_at = _HEADER.size + _padded(length) + _COUNT.size
            codes_at = ids_at + count * 8
            expected, size = codes_at + count * coder.pq.M, os.fstat(handle.fileno()).st_size
            if size != expected:
                raise ValueError(f"{path}: {size} bytes, {expected} expected")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        ids = np.frombuffer(mapped, np.int64, count, ids_at)
        codes = np.frombuffer(mapped, np.uint8, count * coder.pq.M, codes_at).reshape(count, coder.pq.M)
        return cls(coder, ids, codes)

    def merged(self, removed: np.ndarray, added: np.ndarray, added_codes: np.ndarray) -> tuple[int, Chunks]:
        """These codes without ``removed`` and with ``added`` (and their codes), as the number of
        faces and the chunks to write them from, read a chunk of this file at a time."""
        removed = np.unique(removed)
        gone = int(np.count_nonzero(self.find(removed)[1]))
        order = np.argsort(added, kind="stable")
        added, added_codes = added[order], added_codes[order]
        where = np.searchsorted(self.ids, added)  # where each added face falls among these ids

        def chunks() -> Chunks:
            starts = list(range(0, self.count, CHUNK)) or [0]
            for start in starts:
                stop = min(start + CHUNK, self.count)
                ids, codes = np.asarray(self.ids[start:stop]), np.asarray(self.codes[start:stop])
                keep = ~np.isin(ids, removed)
                first = np.searchsorted(where, start)
                last = len(where) if stop == self.count else np.searchsorted(where, stop)
                ids = np.concatenate([ids[keep], added[first:last]])
                codes = np.concatenate([codes[keep], added_codes[first:last]])
                sort = np.argsort(ids, kind="stable")
                yield ids[sort], codes[sort]

        return self.count - gone + len(added), chunks()


class Coding:
    """The codes of an index being built, kept in the order the faces came, sorted when written."""

    def __init__(self, coder: faiss.IndexPQ) -> None:
        self.coder = coder
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.parts.append((np.asarray(ids, np.int64).copy(), encode(self.coder, vectors)))

    def chunks(self) -> Chunks:
        """Every face's code, in ascending order of id. A rebuild reads the catalog in id order,
        so the codes are sorted already and only stream out; else they are sorted first."""
        ids = np.concatenate([part[0] for part in self.parts]) if self.parts else np.zeros(0, np.int64)
        if np.all(np.diff(ids) > 0):
            yield from self.parts
            return
        codes = np.concatenate([part[1] for part in self.parts])
        order = np.argsort(ids, kind="stable")
        for start in range(0, len(order), CHUNK):
            chosen = order[start : start + CHUNK]
            yield ids[chosen], codes[chosen]


def best_of(scorer: faiss.IndexPQ, rows: np.ndarray, query: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``keep`` of ``rows`` (the rows whose codes ``scorer`` holds, in its order) that score
    highest for ``query``, best first, and their scores. A scorer is only read: searches in
    several threads may share one."""
    scores, order = scorer.search(np.ascontiguousarray(query[None, :], dtype=np.float32), max(1, min(keep, len(rows))))
    found = order[0] >= 0
    return rows[order[0][found]], scores[0][found]


def find(ascending: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of the ``wanted`` values is in ``ascending`` (a sorted array), and whether it is
    there."""
    if not len(ascending):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    position = np.minimum(np.searchsorted(ascending, wanted), len(ascending) - 1)
    return position, np.asarray(ascending[position]) == wanted


def encode(coder: faiss.IndexPQ, vectors: np.ndarray) -> np.ndarray:
    """The codes of ``vectors``, one row of ``code_bytes`` per vector."""
    if not len(vectors):
        return np.zeros((0, coder.pq.M), np.uint8)
    return coder.sa_encode(np.ascontiguousarray(vectors, dtype=np.float32))


def _padded(length: int) -> int:
    return -(-length // 8) * 8


def write_codes(path: Path, coder: faiss.IndexPQ, count: int, chunks: Chunks) -> None:
    """Write a codes file atomically (temp file, fsync, rename) from chunks of ids in ascending
    order, ``count`` faces in all; made durable as it goes, as base files are (see ``write_ivf``)."""
    if coder.ntotal:
        raise ValueError("the quantiser is written without codes of its own")
    serialised = faiss.serialize_index(coder).tobytes()
    ids_at = _HEADER.size + _padded(len(serialised)) + _COUNT.size
    codes_at = ids_at + count * 8
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    written, dirty, last = 0, 0, None
    with open(tmp, "wb") as handle:
        handle.write(_HEADER.pack(MAGIC, len(serialised)) + serialised.ljust(_padded(len(serialised)), b"\0"))
        handle.write(_COUNT.pack(count))
        handle.truncate(codes_at + count * coder.pq.M)
        fd = handle.fileno()
        for ids, codes in chunks:
            if written + len(ids) > count or codes.shape != (len(ids), coder.pq.M):
                raise ValueError(f"{written + len(ids)} faces, {count} expected; codes {codes.shape}")
            if len(ids) and (np.any(np.diff(ids) <= 0) or (last is not None and ids[0] <= last)):
                raise ValueError("codes must be written in ascending order of face id")
            os.pwrite(fd, np.ascontiguousarray(ids, dtype=np.int64), ids_at + written * 8)
            os.pwrite(fd, np.ascontiguousarray(codes, dtype=np.uint8), codes_at + written * coder.pq.M)
            written += len(ids)
            last = ids[-1] if len(ids) else last
            dirty += len(ids) * (8 + coder.pq.M)
            if dirty >= DURABLE_EVERY:
                os.fdatasync(fd)
                dirty = 0
        if written != count:
            raise ValueError(f"{written} faces written, {count} expected")
        os.fsync(fd)
    os.replace(tmp, path)
