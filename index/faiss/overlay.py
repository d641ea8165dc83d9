"""The changes a process has applied on top of a gallery's base file since it was written.

Base files are immutable (every process maps the same one), so faces added since go into
a small exact index here, and faces removed since into a set that searches of the base
leave out. A checkpoint folds the overlay into the next base file.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from ..records import IdSet


class Overlay:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.added = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._added_ids: set[int] = set()
        self.removed: set[int] = set()  # faces of the base
        self._exclusion: tuple[faiss.IDSelector, ...] | None = None

    def __len__(self) -> int:
        return len(self._added_ids) + len(self.removed)

    @property
    def added_count(self) -> int:
        return len(self._added_ids)

    @property
    def nbytes(self) -> int:
        return len(self._added_ids) * (self.dim * 4 + 24) + len(self.removed) * 80

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.added.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(ids, np.int64))
            self._added_ids.update(int(i) for i in ids)

    def remove(self, ids: list[int]) -> int:
        """Remove faces: from the added ones if they are there, else from the base; how many
        of them were added here."""
        own = [i for i in ids if i in self._added_ids]
        if own:
            self.added.remove_ids(np.array(own, dtype=np.int64))
            self._added_ids.difference_update(own)
        base = set(ids) - set(own)
        if base - self.removed:
            self.removed |= base
            self._exclusion = None
        return len(own)

    def exclusion(self, labels: Callable[[np.ndarray], np.ndarray]) -> faiss.IDSelector | None:
        """A selector of the base's faces that are still there (None when none was removed), by
        what the base's searches call its faces (``VectorIndex.labels``): an overlay belongs to
        one base, so the selector is made once for each change of the removed faces."""
        if not self.removed:
            return None
        if self._exclusion is None:
            batch = faiss.IDSelectorBatch(labels(np.array(sorted(self.removed), np.int64)))
            self._exclusion = (faiss.IDSelectorNot(batch), batch)  # the batch must outlive the Not
        return self._exclusion[0]

    def search(self, queries: np.ndarray, k: int, allowed: IdSet | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest faces added here (among the ``allowed`` only, if given)."""
        if allowed is not None and self._added_ids:
            ids = faiss.vector_to_array(self.added.id_map).astype(np.int64)
            kept = ids[allowed.contains(ids)]
            if not len(kept):
                return self.search(queries, 0)
            selector = faiss.IDSelectorBatch(kept)
            params = faiss.SearchParameters(sel=selector)
            return self.added.search(np.ascontiguousarray(queries, np.float32), min(k, len(kept)), params=params)
        if not self._added_ids or not k:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self.added.search(np.ascontiguousarray(queries, np.float32), min(k, len(self._added_ids)))

    def added_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the faces added here, for folding into the next base."""
        if not self._added_ids:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        ids = faiss.vector_to_array(self.added.id_map).astype(np.int64)
        flat = faiss.downcast_index(self.added.index)
        return ids, faiss.rev_swig_ptr(flat.get_xb(), len(ids) * self.dim).reshape(len(ids), self.dim).copy()
