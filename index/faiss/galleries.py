"""The galleries' FAISS indexes in one process, kept in step with the catalog's change log.

Each gallery's index is an immutable base file, memory-mapped (so every worker process of
a server shares its pages and a start-up reads nothing), plus this process's overlay of
the changes logged since the base was written. Before every search the overlay takes in
the changes it has not yet seen, whichever process wrote them, so every committed write
is in the next answer. A checkpoint folds the overlay into the next base file, streamed to
disk list by list, and trims the log; one process at a time does it (the gallery's lock),
and the others switch to the new file when they notice it.

A rebuild (``index.faiss.rebuild``), whether run by ``scripts/rebuild_index.py`` or by the
server itself in a child process, ends by moving the gallery in the catalog to a new index
generation; a serving process maps the new generation's base file at its next search and
replays the changes made since the rebuild's snapshot.

``FaissIndexes`` is the ``VectorIndexes`` of this backend, made of four parts, one concern
each: ``GalleryCache`` (``cache.py``: loading, switching, catching up, eviction under the
memory budget), ``Checkpointer`` (``checkpoints.py``), ``RebuildScheduler``
(``scheduler.py``: background rebuilds in child processes and checkpoints in threads) and
``Maintenance`` (``maintenance.py``: a script's rebuilds and re-embedding swaps). What ties
them together stays here: catching a gallery up before it answers, and deciding when it
needs a rebuild or a checkpoint.

Lock order. A thread that holds a lock of this list may only wait for one further down:

1. ``GalleryCache._loading[gid]``: the one thread loading or switching a gallery's index.
   Loading may build the gallery from the catalog, which takes (2).
2. ``IndexFiles.lock(gid)``: the gallery's ``flock``, across processes: checkpoints, rebuilds,
   re-embedding swaps. A checkpoint holds it and only *tries* (1), never waits for it,
   since a loading thread may hold (1) and wait for (2).
3. ``GalleryIndex.lock``: one index's readers-writer lock: searches and status read it;
   catching up, and switching its packed copy to a checkpoint's base, write it. Switching
   takes (4) while holding it.
4. ``GalleryCache._entries_lock``: the map of loaded indexes. Held only to read or change
   the map (and the scheduler's task table is read without its lock under it).
5. ``RebuildScheduler._lock``: the task table and the rebuild children. Nothing is waited
   for under it: task threads are joined after it is released.

The catalog's own locks (an LMDB writer's, a database's) are taken last, under any of these.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from ..catalog import Catalog
from ..filters import EVERYTHING, Scope
from ..records import GalleryRecord
from ..vectors import IndexDetails, IndexSettings, IndexStatus, RebuildResult, SearchObserver, SearchObservers
from .cache import GalleryCache
from .checkpoints import Checkpointer
from .files import IndexFiles
from .gallery import GalleryIndex
from .maintenance import Maintenance
from .rebuild import rebuild_reason
from .scheduler import RebuildScheduler
from .vector_index import FLAT, IVF, PACKED

log = logging.getLogger(__name__)


class FaissIndexes:
    """``index.vectors.VectorIndexes`` in this process, over base files under ``directory``."""

    component = "indexes"

    def __init__(self, catalog: Catalog, directory: Path, settings: IndexSettings, serving: bool = False) -> None:
        """``serving``: this process answers searches, so it checkpoints, trims the logs and
        rebuilds in the background. Other processes (the import script) write to the catalog
        and leave all of that to the server."""
        self.catalog = catalog
        self.files = IndexFiles(directory)
        self.settings = settings
        self.serving = serving
        self.observers = SearchObservers()

        def in_force() -> IndexSettings:  # what ``tune`` changes, read by every part
            return self.settings

        self.scheduler = RebuildScheduler(catalog.opener, directory, in_force, self._checkpoint, self._current)
        self.cache = GalleryCache(catalog, self.files, in_force, self.scheduler.busy)
        self.checkpointer = Checkpointer(catalog, self.files, self.cache)
        self.maintenance = Maintenance(catalog, self.files, in_force)
        self._opened = False
        if serving:
            # one OpenMP thread per search: the request threads already run searches side by side,
            # and a search's own threads would compete with them for the same cores
            faiss.omp_set_num_threads(settings.search_threads)

    def _checkpoint(self, gid: int) -> bool:
        return self.checkpointer.checkpoint(gid)

    # -- keeping a gallery up to date ----------------------------------------------------------

    def _current(self, gid: int) -> GalleryIndex | None:
        """The gallery's index, caught up with every committed change."""
        gallery = self.cache.gallery(gid)
        entry = self.cache.entry(gid, gallery)
        if entry is not None:
            caught = self.cache.catch_up(gid, entry, gallery)
            if caught is None:
                # another process's checkpoint trimmed the log past this index: load it afresh (the
                # new base file holds the changes)
                self.cache.admit(gid, None)
                entry = self.cache.entry(gid, gallery)
            else:
                removed, before = caught
                if entry.state.kind == IVF and removed > self.settings.compact_fraction * max(before, 1):
                    self.request_rebuild(gid, f"compaction: {removed} of {before} vectors removed at once")
        if entry is None:
            return None
        if self.serving:
            self._keep_up(gid, entry, gallery)
        return entry

    def _keep_up(self, gid: int, entry: GalleryIndex, gallery: GalleryRecord) -> None:
        """Rebuild when the index is the wrong kind or drifted; checkpoint a large overlay."""
        reason = rebuild_reason(entry.state, gallery.faces, self.settings)
        if reason is not None and self.scheduler.may_retry(gid):
            self.request_rebuild(gid, reason)
        elif len(entry.overlay) >= self.settings.fold_after:
            self.scheduler.start(gid, None)

    def sync(self, gid: int) -> None:
        """Bring the gallery's index up to the latest committed change.

        A non-serving process only keeps up the indexes it has already loaded (to search).
        """
        if self.serving or self.cache.held(gid) is not None:
            self._current(gid)

    # -- answering ------------------------------------------------------------------------

    def observe_searches(self, observer: SearchObserver) -> None:
        self.observers.add(observer)

    def search(self, gid: int, queries: np.ndarray, k: int, scope: Scope = EVERYTHING) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) per query, after catching up with every committed change; a
        compressed index's candidates are scored with the exact vectors from the catalog. A
        scope is resolved by the catalog's metadata index into the faces it allows, which every
        stage of the search keeps to (``GalleryIndex.within``)."""
        with self.observers.timed():
            return self._search(gid, queries, k, scope, near=False)

    def neighbours(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._search(gid, queries, k, EVERYTHING, near=True)

    def _search(self, gid: int, queries: np.ndarray, k: int, scope: Scope, near: bool) -> tuple[np.ndarray, np.ndarray]:
        while True:  # again if the index was retired while this search waited for it (``switch``)
            entry = self._current(gid)
            if entry is None or entry.count == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            allowed = None if scope.everything else self.catalog.images.select(gid, scope)
            with entry.lock.read():
                if not entry.retired:
                    exact = lambda ids: self.catalog.images.vectors(gid, ids)  # noqa: E731
                    return entry.search(queries, k, self.settings, exact, allowed, near)

    def status(self, gid: int) -> IndexStatus:
        entry = self._current(gid)
        committed = self.cache.gallery(gid).index_generation
        rebuilding = self.scheduler.rebuilding(gid)
        if entry is None or entry.count == 0:
            return IndexStatus(FLAT, 0, rebuilding, entry.generation if entry else committed, committed)
        with entry.lock.read():
            state = entry.state
            details = IndexDetails(
                dim=state.dim,
                lists=state.nlist,
                nprobe=state.nprobe,
                storage=state.storage,
                trained_on=state.trained_on,
                churn_since_training=round(state.churn(), 4),
                last_rebuild=state.built_at,
                seq=state.seq,
                rebuild_needed=rebuild_reason(state, entry.count, self.settings),
                second_code=state.refine_bytes,
                scan_code=state.scan_codes // 2 if state.kind == IVF and state.storage == PACKED else 0,
            )
            return IndexStatus(state.kind, entry.count, rebuilding, entry.generation, committed, details)

    def verify(self, gid: int) -> bool:
        """True when the index holds exactly the gallery's live faces in the catalog."""
        entry = self._current(gid)
        expected = set(self.catalog.images.face_ids(gid).tolist())
        if entry is None:
            return not expected
        with entry.lock.read():
            return set(entry.ids().tolist()) == expected

    def tune(self, **search: int) -> None:
        """Change search-time settings (``nprobe``, ``candidates``, ``rerank``) of this process's
        indexes, loaded or not: no rebuild needed."""
        self.settings = replace(self.settings, **search)
        self.cache.set_nprobe(self.settings.nprobe)

    def loaded(self) -> list[int]:
        """The galleries whose index this process holds now, least recently used first."""
        return self.cache.loaded()

    def ready(self) -> bool:
        """Every gallery is loaded or loadable: start-up has looked at each one."""
        return self._opened

    # -- checkpoints and background rebuilds ---------------------------------------------------

    def save_all(self) -> int:
        """Checkpoint every loaded gallery with changes beside its base file; how many were written."""
        return self.checkpointer.save_all()

    def request_rebuild(self, gid: int, reason: str) -> bool:
        """Rebuild the gallery's index in the background (serving processes only); False if
        one is already under way, since its result will be checked again once adopted."""
        return self.serving and self.scheduler.start(gid, reason)

    def wait(self, gid: int, timeout: float = 600.0) -> None:
        """Wait for the gallery's background rebuild or checkpoint, if one is running."""
        self.scheduler.wait(gid, timeout)

    # -- maintenance ---------------------------------------------------------------------------

    def rebuild_reason(self, gid: int) -> str | None:
        return self.maintenance.rebuild_reason(gid)

    def rebuild(self, gid: int, wait: bool = False, progress: Callable[[str], None] = log.info) -> RebuildResult | None:
        """Rebuild in this process (a script's gives up CPU priority and keeps to
        ``rebuild_threads``); a serving process adopts the new generation at its next search."""
        return self.maintenance.rebuild(gid, wait, progress, yield_to_searches=not self.serving)

    @contextlib.contextmanager
    def exclusive(self, gid: int, wait: bool = False) -> Iterator[bool]:
        with self.maintenance.exclusive(gid, wait) as held:
            yield held

    def swap(self, gid: int, pack: str, dim: int) -> bool:
        return self.maintenance.swap(gid, pack, dim)

    # -- start and stop ------------------------------------------------------------------------

    def open_all(self) -> None:
        """At start-up: load the galleries (as many as the memory budget holds), make each agree
        with the catalog, and start checkpointing every ``save_seconds``."""
        for gid, gallery in self.catalog.images.galleries().items():
            entry = self._current(gid)
            count = entry.count if entry is not None else 0
            if count != gallery.faces:
                log.warning(
                    "gallery %d: index holds %d faces, the catalog %d; building it again", gid, count, gallery.faces
                )
                self.cache.switch(gid, self.cache.built(gid))
        self._opened = True
        if self.serving and self.settings.save_seconds > 0:
            self.checkpointer.start(self.settings.save_seconds)

    def close(self) -> None:
        """Stop background rebuilds (their files are cleaned by the next one) and checkpoint."""
        self.checkpointer.stop()
        self.scheduler.stop()
        if self.serving:
            self.save_all()
