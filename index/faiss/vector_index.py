"""A gallery's FAISS index keyed by face id: exact while small, IVF once large.

Inner product on unit vectors is cosine similarity. The exact index answers perfectly
and costs O(n) a query; past a size threshold the gallery moves to an IVF index trained
on its own vectors, whose number of lists grows with the gallery (about 4 * sqrt(n)).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from ..vectors import IndexSettings
from .files import SAVE_TMP

FLAT = "flat"
IVF = "ivf"

TRAIN_PER_LIST = 40  # k-means sample per list: FAISS asks for >= 39; more costs time, not recall
TRAIN_ITERATIONS = 10  # k-means rounds (FAISS defaults to 25; the centroids barely move after 10)


@dataclass
class IndexState:
    kind: str
    dim: int
    seq: int = 0  # the gallery change the index reflects
    nlist: int = 0
    nprobe: int = 0
    trained_on: int = 0
    removed_since_training: int = 0
    added_since_training: int = 0
    built_at: str | None = None
    generation: int = 0  # the gallery's index generation (LMDB) this index was built for
    extra: dict = field(default_factory=dict)


def nlist_for(count: int) -> int:
    """About 4 * sqrt(n) lists, with at least 39 training vectors per list as FAISS asks."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


def training_sample(vectors: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """A random subset big enough for k-means: training on every vector of a large gallery
    would cost minutes more and move the centroids very little."""
    size = nlist * TRAIN_PER_LIST
    if len(vectors) <= size:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    chosen = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
    return np.ascontiguousarray(vectors[chosen], dtype=np.float32)


class VectorIndex:
    def __init__(self, index: faiss.Index, state: IndexState) -> None:
        self.index = index
        self.state = state

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), IndexState(kind=FLAT, dim=dim))

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, settings: IndexSettings) -> VectorIndex:
        """The right index for this many vectors, holding all of them."""
        built = cls.empty(dim) if len(ids) < settings.ivf_threshold else cls.trained(dim, vectors, settings)
        built.add(ids, vectors)
        built.state.added_since_training = 0
        return built

    @classmethod
    def trained(cls, dim: int, vectors: np.ndarray, settings: IndexSettings) -> VectorIndex:
        """An empty IVF whose lists are k-means centroids of (a sample of) ``vectors``."""
        nlist = nlist_for(len(vectors))
        quantizer = faiss.IndexFlatIP(dim)
        if settings.storage == "sq8":
            index = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = TRAIN_ITERATIONS
        index.train(training_sample(vectors, nlist))
        index.nprobe = settings.nprobe
        state = IndexState(kind=IVF, dim=dim, nlist=nlist, nprobe=settings.nprobe, trained_on=len(vectors))
        state.extra["storage"] = settings.storage
        return cls(index, state)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def set_nprobe(self, nprobe: int) -> None:
        """The setting wins over the value saved with the index: changing it needs no rebuild."""
        if self.state.kind == IVF:
            self.index.nprobe = nprobe
            self.state.nprobe = nprobe

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64)
            )
            self.state.added_since_training += len(ids)

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        removed = int(self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))
        self.state.removed_since_training += removed
        return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` nearest faces per query; id -1 pads missing hits."""
        k = max(1, min(k, self.count))
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def ids(self) -> np.ndarray:
        """Every id in the index, for checking it against the store."""
        if self.state.kind == FLAT:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        invlists = self.index.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)
            if invlists.list_size(i)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def churn(self) -> float:
        """How much of an IVF has changed since it was trained, as a share of its training set."""
        return churn_of(self.state)

    def copy(self) -> VectorIndex:
        """An independent copy: a checkpoint is written from it while the original keeps changing."""
        return VectorIndex(faiss.clone_index(self.index), replace(self.state, extra=dict(self.state.extra)))

    def save(self, path: Path, tmp_suffix: str = SAVE_TMP) -> None:
        """Write header and index to one file atomically (temp file, fsync, rename).

        FAISS streams into the file through a callback, so a large index is never held
        twice in memory as serialised bytes.
        """
        header = json.dumps(asdict(self.state)).encode()
        tmp = path.with_name(path.name + tmp_suffix)
        with open(tmp, "wb") as handle:
            handle.write(len(header).to_bytes(4, "big") + header)
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(handle.write))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        with open(path, "rb") as handle:
            state = _read_header(handle)
            index = faiss.read_index(faiss.PyCallbackIOReader(handle.read))
        if state.kind == IVF:
            index.nprobe = state.nprobe
        return cls(index, state)


def churn_of(state: IndexState) -> float:
    if not state.trained_on:
        return 0.0
    return (state.added_since_training + state.removed_since_training) / state.trained_on


def _read_header(handle: BinaryIO) -> IndexState:
    length = int.from_bytes(handle.read(4), "big")
    return IndexState(**json.loads(handle.read(length)))


def read_state(path: Path) -> IndexState:
    """The header of a saved index without its vectors: cheap enough for a cron job's check."""
    with open(path, "rb") as handle:
        return _read_header(handle)
