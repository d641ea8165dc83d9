"""The vector index: per-gallery nearest-neighbour search, derived from the catalog.

A vector index holds no truth of its own. It follows the catalog's change log, so a
write made by any process (or before a crash) is searched once ``sync`` has run, and it
can always be rebuilt from a catalog snapshot. Implementations: ``index.faiss`` (embedded:
in each process's memory, checkpointed to local files) and ``index.milvus`` (cluster mode: a
Milvus server, fed from the catalog's outbox). Faces are unit vectors, so scores are cosines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .filters import EVERYTHING, Scope


@dataclass(frozen=True)
class IndexSettings:
    """How galleries are indexed; every backend reads the settings that apply to it."""

    ivf_threshold: int = 50_000  # vectors at which a gallery moves from exact to IVF
    nprobe: int = 512  # lists a query scans: docs/benchmarks/2026-12-04-large-galleries.md sweeps it
    storage: str = "pq4"  # vectors in the IVF lists: 4-bit "pq4" codes (72 B/face), "pq", "sq8" or "flat"
    refine_bytes: int = 128  # bytes a face of a pq4 IVF's second code, ranking its candidates (0: none)
    scan_bytes: int = 64  # at most this many bytes a face of a pq4 IVF's scan codes: 4 bits per 4 dims up to 512-d
    candidates: int = 6400  # faces a pq4 IVF's scan returns for the second code to rank
    rebuild_churn: float = 0.5  # share of an IVF changed since training that calls for a rebuild
    compact_fraction: float = 0.2  # a delete removing more than this share of a gallery compacts it
    rebuild_threads: int = 1  # threads of a rebuild, so searches keep a core on 2-core machines
    save_seconds: int = 60  # checkpoint interval of a serving process (0: only at shutdown)
    search_threads: int = 1  # threads of one search: the request threads already search side by side
    rerank: int = 100  # candidates of a compressed index scored again with the exact vectors
    fold_after: int = 100_000  # changes held beside a base file before a checkpoint folds them in
    memory_bytes: int = 0  # indexes one process keeps loaded, least recently used evicted (0: RAM / 8)
    # a grouping run's neighbours (``VectorIndexes.neighbours``): an IVF scan probing these lists and
    # returning these candidates for the second code, the nearest scored exactly (the persons report)
    neighbour_nprobe: int = 64
    neighbour_candidates: int = 128
    # the metadata keys every gallery indexes for filters (``Settings.indexing`` copies them from
    # the filter settings): cluster mode holds them in typed fields of the Milvus rows
    filter_keys: tuple[str, ...] = ()


STORAGES = ("flat", "sq8", "pq", "pq4")
# how many of ``IndexSettings.filter_keys`` a vector backend holds beside each vector in typed
# fields (cluster mode: five Milvus fields each, inside Milvus's 64 fields a collection)
TYPED_FILTER_KEYS = 8


@dataclass(frozen=True)
class IndexDetails:
    """What a gallery's built index is made of."""

    dim: int
    lists: int
    nprobe: int
    storage: str
    trained_on: int
    churn_since_training: float
    last_rebuild: str | None
    seq: int
    rebuild_needed: str | None
    second_code: int = 0  # bytes a face of the code that ranks a compressed IVF's candidates
    scan_code: int = 0  # bytes a face of a pq4 IVF's codes that its scan reads


@dataclass(frozen=True)
class IndexStatus:
    """A gallery's index as this process holds it, and the generation the catalog has committed
    (a rebuild by another process commits one before this process adopts it); ``details`` is
    None before the index holds a vector."""

    kind: str  # "flat" (exact) or "ivf"; "hnsw" in Milvus
    vectors: int
    rebuilding: bool
    generation: int  # the generation this process searches
    committed_generation: int
    details: IndexDetails | None = None
    pending: int = 0  # committed changes not in the index yet (the outbox lag of a cluster)
    pending_seconds: float = 0.0  # age of the oldest of them

    @property
    def adopted(self) -> bool:
        return self.generation == self.committed_generation


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild made, and how long reading and building, then writing, took."""

    gallery: int
    generation: int
    seq: int
    kind: str
    vectors: int
    lists: int
    build_seconds: float
    write_seconds: float

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.write_seconds


SearchObserver = Callable[[float], None]  # told the seconds one gallery query took


class SearchObservers:
    """Who is told how long each search took (metrics): a backend times its searches with
    ``timed`` and the service adds its observer through ``VectorIndexes.observe_searches``."""

    def __init__(self) -> None:
        self._observers: list[SearchObserver] = []

    def add(self, observer: SearchObserver) -> None:
        """Once: a second app over the same index adds the same observer again."""
        if observer not in self._observers:
            self._observers.append(observer)

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - started
            for observer in self._observers:
                observer(took)


class VectorIndexes(Protocol):
    """One index per gallery, kept in step with the catalog."""

    @property
    def component(self) -> str:
        """What readiness checks call this vector index (``indexes``, ``milvus``)."""
        ...

    def sync(self, gid: int) -> None:
        """Bring the gallery's index up to the latest committed change (after a write)."""
        ...

    def search(self, gid: int, queries: np.ndarray, k: int, scope: Scope = EVERYTHING) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) of the ``k`` nearest faces per query, after catching up with
        every committed change; id -1 pads missing hits. With a ``scope``, the ``k`` nearest
        among the faces of the images in it, at the recall of an exact search over those faces:
        the scope is applied inside the search, not to its answer. A backend that cannot tell
        exactly (a vector server's copy of the metadata lagging the catalog) may answer a face
        outside the scope, never leave out one inside it: the caller checks each hit against the
        catalog."""
        ...

    def neighbours(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, face ids) of about the ``k`` nearest faces of each query (a grouping run's
        neighbours of many faces): cheaper than ``search`` per query, where the backend can trade
        a little recall of far neighbours for it, the scores exact; id -1 pads. Not timed as a
        search."""
        ...

    def observe_searches(self, observer: SearchObserver) -> None:
        """Tell ``observer`` how long each search takes from now on (the service's metrics)."""
        ...

    def status(self, gid: int) -> IndexStatus: ...

    def verify(self, gid: int) -> bool:
        """True when the index holds exactly the gallery's live faces."""
        ...

    def ready(self) -> bool:
        """True when every gallery with faces can be searched without a load."""
        ...

    def rebuild_reason(self, gid: int) -> str | None:
        """Why the gallery's index should be rebuilt, cheaply, from what is saved (for cron jobs)."""
        ...

    def rebuild(self, gid: int, wait: bool = False, progress: Callable[[str], None] = print) -> RebuildResult | None:
        """Rebuild from a catalog snapshot and make it current; None for a gallery that never
        held a face. IndexBusyError when another rebuild holds the gallery and not ``wait``."""
        ...

    def request_rebuild(self, gid: int, reason: str) -> bool:
        """Rebuild in the background (serving processes); False if one is already under way."""
        ...

    def exclusive(self, gid: int, wait: bool = False) -> AbstractContextManager[bool]:
        """Hold the gallery against rebuilds by any process (a re-embedding holds it from its
        first staged vector to its swap); yields False at once if taken and not ``wait``."""
        ...

    def swap(self, gid: int, pack: str, dim: int) -> bool:
        """Index the gallery's staged vectors and swap them, its pack and its index in at once;
        False when images were added meanwhile (stage those, then swap again). Call it while
        holding ``exclusive``."""
        ...

    def wait(self, gid: int, timeout: float = 600.0) -> None:
        """Wait for the gallery's background rebuild or adoption, if one is running."""
        ...

    def open_all(self) -> None:
        """At start-up of a serving process: load every gallery's index and make it agree with the catalog."""
        ...

    def close(self) -> None: ...
