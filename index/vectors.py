"""A gallery's FAISS index keyed by face id: exact while small, IVF once large.

Inner product on unit vectors is cosine similarity. The exact index answers perfectly
and costs O(n) a query; past a size threshold the gallery moves to an IVF index trained
on its own vectors, whose number of lists grows with the gallery (about 4 * sqrt(n)).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

FLAT = "flat"
IVF = "ivf"


@dataclass(frozen=True)
class IndexSettings:
    ivf_threshold: int = 50_000  # vectors at which a gallery moves from exact to IVF
    nprobe: int = 16
    storage: str = "flat"  # vectors inside the IVF lists: "flat" or "sq8"


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
    extra: dict = field(default_factory=dict)


def nlist_for(count: int) -> int:
    """About 4 * sqrt(n) lists, with at least 39 training vectors per list as FAISS asks."""
    return max(1, min(int(4 * math.sqrt(count)), count // 39))


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
        if len(ids) < settings.ivf_threshold:
            built = cls.empty(dim)
        else:
            nlist = nlist_for(len(ids))
            quantizer = faiss.IndexFlatIP(dim)
            if settings.storage == "sq8":
                index = faiss.IndexIVFScalarQuantizer(
                    quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
                )
            else:
                index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(np.ascontiguousarray(vectors, dtype=np.float32))
            index.nprobe = settings.nprobe
            state = IndexState(kind=IVF, dim=dim, nlist=nlist, nprobe=settings.nprobe, trained_on=len(ids))
            state.extra["storage"] = settings.storage
            built = cls(index, state)
        built.add(ids, vectors)
        built.state.added_since_training = 0
        return built

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

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
        if not self.state.trained_on:
            return 0.0
        changed = self.state.added_since_training + self.state.removed_since_training
        return changed / self.state.trained_on

    def save(self, path: Path) -> None:
        """Write header and index to one file atomically (temp file, fsync, rename)."""
        header = json.dumps(asdict(self.state)).encode()
        body = faiss.serialize_index(self.index)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(len(header).to_bytes(4, "big") + header)
            handle.write(body.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        raw = path.read_bytes()
        length = int.from_bytes(raw[:4], "big")
        state = IndexState(**json.loads(raw[4 : 4 + length]))
        index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8, offset=4 + length))
        if state.kind == IVF:
            index.nprobe = state.nprobe
        return cls(index, state)
