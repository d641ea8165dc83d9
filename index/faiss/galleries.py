"""One in-memory FAISS index per gallery, kept in step with the catalog through the change log.

Before every search the index replays the gallery's changes it has not yet seen, so a
write made by this process, by another one (a bulk import script) or before a crash is
reflected without any second channel. Saved index files are checkpoints: each records
the change it reflects, and the log up to that point can then be trimmed. A missing,
stale or damaged checkpoint only costs a reload from the faces in the catalog.

A rebuild (``index.faiss.rebuild``), whether run by ``scripts/rebuild_index.py`` or by the
server itself in a child process, ends by moving the gallery in the catalog to a new index
generation. A serving process notices that at its next sync, loads the new file in a
background thread while the old index keeps answering, swaps it in under the write lock
and replays the changes made since the rebuild's snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ..catalog import Catalog
from ..errors import StagingIncompleteError
from ..locks import ReadWriteLock
from ..records import GalleryRecord
from ..vectors import IndexDetails, IndexSettings, IndexStatus, RebuildResult
from .files import IndexFiles
from .rebuild import (
    EXIT_BUSY,
    now_iso,
    rebuild_gallery,
    rebuild_in_child,
    rebuild_reason,
    saved_rebuild_reason,
    write_generation,
    yield_cpu,
)
from .vector_index import FLAT, IVF, VectorIndex

log = logging.getLogger(__name__)

RETRY_SECONDS = 600.0  # after a failed background rebuild, before the next attempt


@dataclass
class _Entry:
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    index: VectorIndex | None = None
    generation: int = 0  # the catalog's index generation ``index`` belongs to
    saved: tuple[int, int] = (-1, -1)  # (generation, seq) of the last checkpoint written
    task: threading.Thread | None = None  # background rebuild or adoption, one at a time
    rebuild: str | None = None  # why the running task rebuilds, None when it only adopts
    retry_after: float = 0.0


class FaissIndexes:
    """``index.vectors.VectorIndexes`` in this process's memory, checkpointed under ``directory``."""

    def __init__(self, catalog: Catalog, directory: Path, settings: IndexSettings, serving: bool = False) -> None:
        """``serving``: this process answers searches, so it keeps every gallery's index loaded,
        checkpoints it, trims the logs and rebuilds in the background. Other processes (the
        import script) write to the catalog only and leave all of that to the server."""
        self.catalog = catalog
        self.files = IndexFiles(directory)
        self.settings = settings
        self.serving = serving
        self._entries: dict[int, _Entry] = {}
        self._entries_lock = threading.Lock()
        self._tasks_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._children: set[multiprocessing.process.BaseProcess] = set()
        self._stop = threading.Event()
        if serving:
            # one OpenMP thread per search: the request threads already run searches side by side,
            # and a 2-thread search over 100k faces measured 4x slower on a busy 2-core machine
            faiss.omp_set_num_threads(settings.search_threads)

    def _gallery(self, gid: int) -> GalleryRecord:
        return self.catalog.images.gallery(gid)

    def path(self, gid: int) -> Path:
        """The checkpoint file of the gallery's current index generation."""
        return self.files.path(gid, self._gallery(gid).index_generation)

    def _entry(self, gid: int) -> _Entry:
        with self._entries_lock:
            entry = self._entries.get(gid)
            if entry is None:
                generation = self._gallery(gid).index_generation
                entry = self._entries[gid] = _Entry(generation=generation)
                entry.index = self._load(gid, generation)
                if entry.index is not None:
                    entry.saved = (generation, entry.index.state.seq)
            return entry

    def _load(self, gid: int, generation: int) -> VectorIndex | None:
        path = self.files.path(gid, generation)
        if not path.exists():
            return None
        try:
            index = VectorIndex.load(path)
        except Exception as exc:  # a damaged checkpoint is rebuilt from LMDB, never fatal
            log.warning("index checkpoint %s unreadable (%s); rebuilding from the catalog", path, exc)
            return None
        index.set_nprobe(self.settings.nprobe)
        return index

    def reload(self, gid: int) -> VectorIndex | None:
        """Build the gallery's index afresh from every live face in the catalog."""
        snapshot = self.catalog.log.snapshot(gid)
        if snapshot.gallery.dim is None:
            return None
        index = VectorIndex.build(snapshot.gallery.dim, snapshot.ids, snapshot.vectors, self.settings)
        index.state.seq, index.state.built_at = snapshot.gallery.seq, now_iso()
        return index

    def _catch_up(self, gid: int, entry: _Entry, gallery: GalleryRecord) -> None:
        """Replay the log past the index's seq, or reload when the log cannot bridge the gap."""
        index = entry.index
        seen = index.state.seq if index is not None else 0
        batch = self.catalog.log.since(gid, seen)
        changes, vectors = batch.changes, batch.vectors
        gap = not batch.bridges(seen, gallery.seq)
        if index is None and gallery.dim is not None and not gap:
            index = VectorIndex.empty(gallery.dim)
        if index is not None and gallery.dim is not None and index.state.dim != gallery.dim:
            if entry.generation != gallery.index_generation:
                return  # re-embedded: the new generation's index is on its way, with the new vectors
            gap = True
        if gap or index is None:
            entry.index = self.reload(gid)
            entry.generation = gallery.index_generation
            return
        removed = {c.face for c in changes if not c.is_add}
        added = [f for f in (c.face for c in changes if c.is_add) if f in vectors and f not in removed]
        before = index.count
        index.remove(np.array(sorted(removed), dtype=np.int64))
        if added:
            index.add(np.array(added, dtype=np.int64), np.stack([vectors[f] for f in added]))
        if changes:
            index.state.seq = changes[-1].seq
        entry.index = index
        if index.state.kind == IVF and len(removed) > self.settings.compact_fraction * max(before, 1):
            self.request_rebuild(gid, f"compaction: {len(removed)} of {before} vectors removed at once")

    def sync(self, gid: int) -> None:
        """Bring the gallery's index up to the latest committed change.

        A non-serving process only keeps up the indexes it has already loaded (to search).
        """
        if self.serving or gid in self._entries:
            self._current(gid)

    def _current(self, gid: int) -> _Entry:
        entry = self._entry(gid)
        gallery = self._gallery(gid)
        if gallery.index_generation != entry.generation:
            self._adopt_soon(gid, entry)
        with entry.lock.read():
            if entry.index is not None and entry.index.state.seq == gallery.seq:
                return entry
        with entry.lock.write():
            if entry.index is None or entry.index.state.seq != gallery.seq:
                self._catch_up(gid, entry, self._gallery(gid))
            state, faces = (entry.index.state if entry.index else None), gallery.faces
        if self.serving and entry.generation == gallery.index_generation:
            reason = rebuild_reason(state, faces, self.settings)
            if reason is not None and time.monotonic() >= entry.retry_after:
                self.request_rebuild(gid, reason)
        return entry

    # -- new generations ------------------------------------------------------------

    def _adopt_soon(self, gid: int, entry: _Entry) -> None:
        """Swap in the gallery's new generation: in the background while an old index can
        keep answering, at once when there is none (or when not serving)."""
        if self.serving and entry.index is not None:
            self._start_task(gid, entry, None)
        else:
            self._adopt(gid, entry)

    def _adopt(self, gid: int, entry: _Entry) -> None:
        """Load the current generation's file outside the lock, then swap and replay the log."""
        generation = self._gallery(gid).index_generation
        if generation == entry.generation:
            return
        index = self._load(gid, generation)
        if index is None:  # its file is gone or damaged: the faces in the catalog are the truth
            index = self.reload(gid)
        with entry.lock.write():
            if entry.generation == generation:
                return
            entry.index, entry.generation = index, generation
            self._catch_up(gid, entry, self._gallery(gid))
        log.info("gallery %d: index generation %d in use", gid, generation)

    def request_rebuild(self, gid: int, reason: str) -> bool:
        """Rebuild the gallery's index in the background (serving processes only); False if
        one is already under way, since its result will be checked again once adopted."""
        if not self.serving:
            return False
        return self._start_task(gid, self._entry(gid), reason)

    def _start_task(self, gid: int, entry: _Entry, rebuild: str | None) -> bool:
        with self._tasks_lock:
            if self._stop.is_set() or (entry.task is not None and entry.task.is_alive()):
                return False
            entry.rebuild = rebuild
            entry.task = threading.Thread(target=self._run_task, args=(gid, entry), name=f"index-{gid}", daemon=True)
            entry.task.start()
            return True

    def _run_task(self, gid: int, entry: _Entry) -> None:
        try:
            if entry.rebuild is not None:
                log.info("gallery %d: rebuilding index (%s)", gid, entry.rebuild)
                self._rebuild_in_child(gid)
            if not self._stop.is_set():
                self._adopt(gid, entry)
        except Exception:
            entry.retry_after = time.monotonic() + RETRY_SECONDS
            log.exception("gallery %d: background index rebuild failed", gid)

    def _rebuild_in_child(self, gid: int) -> None:
        context = multiprocessing.get_context("spawn")
        child = context.Process(
            target=rebuild_in_child,
            args=(self.catalog.opener(), self.files.directory, gid, self.settings),
            name=f"rebuild-{gid}",
        )
        with self._tasks_lock:
            if self._stop.is_set():
                return
            child.start()
            self._children.add(child)
        child.join()
        with self._tasks_lock:
            self._children.discard(child)
        if child.exitcode not in (0, EXIT_BUSY) and not self._stop.is_set():
            raise RuntimeError(f"rebuild process exited with {child.exitcode}")

    def wait(self, gid: int, timeout: float = 600.0) -> None:
        """Wait for the gallery's background rebuild or adoption, if one is running."""
        entry = self._entry(gid)
        deadline = time.monotonic() + timeout
        while (task := entry.task) is not None and task.is_alive():
            task.join(max(0.0, deadline - time.monotonic()))
            if task.is_alive():
                raise TimeoutError(f"gallery {gid}: background index task still running after {timeout}s")

    # -- reporting and checking --------------------------------------------------------

    def status(self, gid: int) -> IndexStatus:
        entry = self._current(gid)
        with entry.lock.read():
            index = entry.index
            rebuilding = entry.task is not None and entry.task.is_alive() and entry.rebuild is not None
            if index is None:
                return IndexStatus(kind=FLAT, vectors=0, rebuilding=rebuilding, generation=entry.generation)
            state = index.state
            details = IndexDetails(
                dim=state.dim,
                lists=state.nlist,
                nprobe=state.nprobe,
                storage=state.extra.get("storage", "flat"),
                trained_on=state.trained_on,
                churn_since_training=round(index.churn(), 4),
                last_rebuild=state.built_at,
                seq=state.seq,
                rebuild_needed=rebuild_reason(state, index.count, self.settings),
            )
            return IndexStatus(state.kind, index.count, rebuilding, entry.generation, details)

    def search(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) per query, after catching up with every committed change."""
        entry = self._current(gid)
        with entry.lock.read():
            if entry.index is None or entry.index.count == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            return entry.index.search(queries, k)

    def verify(self, gid: int) -> bool:
        """True when the index holds exactly the gallery's live faces in the catalog."""
        entry = self._current(gid)
        expected = set(self.catalog.log.snapshot(gid).ids.tolist())
        with entry.lock.read():
            held = set(entry.index.ids().tolist()) if entry.index is not None else set()
        return held == expected

    def ready(self) -> bool:
        """Every gallery with faces has an index holding vectors (asking for its status catches it up)."""
        return all(
            self.status(gid).vectors > 0 or gallery.faces == 0
            for gid, gallery in self.catalog.images.galleries().items()
        )

    # -- maintenance --------------------------------------------------------------------

    def rebuild_reason(self, gid: int) -> str | None:
        return saved_rebuild_reason(self.catalog, self.files, gid, self.settings)

    def rebuild(self, gid: int, wait: bool = False, progress: Callable[[str], None] = log.info) -> RebuildResult | None:
        """Rebuild in this process (a script's: it gives up CPU priority and keeps to
        ``rebuild_threads``); a serving process adopts the new generation at its next search."""
        if not self.serving:
            yield_cpu(self.settings.rebuild_threads)
        return rebuild_gallery(self.catalog, self.files, gid, self.settings, wait, progress)

    @contextlib.contextmanager
    def exclusive(self, gid: int, wait: bool = False) -> Iterator[bool]:
        with self.files.lock(gid, wait) as held:
            yield held

    def swap(self, gid: int, pack: str, dim: int) -> bool:
        """Write the index of the staged vectors as the next generation, then swap vectors,
        pack and generation in one catalog write."""
        staged = self.catalog.staging.snapshot(gid, pack)
        if staged.missing:
            return False
        index = VectorIndex.build(dim, staged.ids, staged.vectors.reshape(len(staged.ids), dim), self.settings)
        write_generation(self.files, gid, staged.gallery, index)
        try:
            self.catalog.staging.swap(gid, pack, dim, staged.gallery.seq, staged.gallery.index_generation)
        except StagingIncompleteError:
            return False
        self.files.remove_older(gid, staged.gallery.index_generation + 1)
        return True

    # -- start, checkpoints, stop -------------------------------------------------------

    def open_all(self) -> None:
        """At start-up: load every gallery's checkpoint, make it agree with the catalog, and
        start checkpointing every ``save_seconds``."""
        for gid, gallery in self.catalog.images.galleries().items():
            entry = self._current(gid)
            count = entry.index.count if entry.index is not None else 0
            if count != gallery.faces:
                log.warning("gallery %d: index holds %d faces, the catalog %d; reloading", gid, count, gallery.faces)
                with entry.lock.write():
                    entry.index = self.reload(gid)
        if self.settings.save_seconds > 0:
            self._start_autosave(self.settings.save_seconds)

    def save_all(self) -> int:
        """Checkpoint every gallery that changed since its last save, then trim its log.

        The index is copied under its read lock and written to disk outside it: writing a
        million-face index takes seconds, during which an add (and, behind that waiting
        writer, every search) would stall. The copy holds the index's memory once more
        while the file is written.
        """
        saved = 0
        with self._save_lock:  # the autosave thread and close() write the same files
            with self._entries_lock:
                entries = list(self._entries.items())
            for gid, entry in entries:
                with entry.lock.read():
                    index = entry.index
                    if index is None or (entry.generation, index.state.seq) == entry.saved:
                        continue
                    generation, snapshot = entry.generation, index.copy()
                snapshot.state.generation = generation
                snapshot.save(self.files.path(gid, generation))
                entry.saved = (generation, snapshot.state.seq)
                self._trim(gid, *entry.saved)
                saved += 1
        return saved

    def _trim(self, gid: int, generation: int, seq: int) -> None:
        """Trim the log up to a checkpoint, unless a rebuild may still need it.

        A rebuild holds the gallery's lock from its snapshot to its commit, and a newer
        generation in the catalog was built from a snapshot this checkpoint may be past: in
        both cases the log must stay, or adopting the new index would need a full reload.
        """
        with self.files.lock(gid, wait=False) as held:
            if held and self._gallery(gid).index_generation == generation:
                self.catalog.log.trim(gid, seq)
                self.files.remove_older(gid, generation)

    def _start_autosave(self, interval: float) -> None:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.save_all()
                except Exception:  # keep checkpointing after a transient failure (disk full)
                    log.exception("index checkpoint failed")

        threading.Thread(target=run, name="index-autosave", daemon=True).start()

    def close(self) -> None:
        """Stop background rebuilds (their files are cleaned by the next one) and checkpoint."""
        with self._tasks_lock:
            self._stop.set()
            for child in self._children:
                child.terminate()
        with self._entries_lock:
            tasks = [entry.task for entry in self._entries.values() if entry.task is not None]
        for task in tasks:
            task.join()
        if self.serving:
            self.save_all()
