"""The galleries' FAISS indexes in one process, kept in step with the catalog's change log.

Each gallery's index is an immutable base file, memory-mapped (so every worker process of
a server shares its pages and a start-up reads nothing), plus this process's overlay of
the changes logged since the base was written. Before every search the overlay takes in
the changes it has not yet seen, whichever process wrote them, so every committed write
is in the next answer. A checkpoint folds the overlay into the next base file, streamed to
disk list by list, and trims the log; one process at a time does it (the gallery's lock),
and the others switch to the new file when they notice it.

Galleries are loaded on first use and the least recently used are dropped once the loaded
ones would exceed ``memory_bytes``; a dropped gallery is its base file and its log, loaded
again (in milliseconds) by the next search.

A rebuild (``index.faiss.rebuild``), whether run by ``scripts/rebuild_index.py`` or by the
server itself in a child process, ends by moving the gallery in the catalog to a new index
generation; a serving process maps the new generation's base file at its next search and
replays the changes made since the rebuild's snapshot.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from ..catalog import Catalog
from ..errors import StagingIncompleteError
from ..records import GalleryRecord
from ..vectors import IndexDetails, IndexSettings, IndexStatus, RebuildResult
from .files import IndexFiles
from .gallery import GalleryIndex
from .rebuild import (
    BATCH,
    EXIT_BUSY,
    build_index,
    rebuild_gallery,
    rebuild_in_child,
    rebuild_reason,
    saved_rebuild_reason,
    write_base,
    yield_cpu,
)
from .vector_index import FLAT, IVF, PACKED, IndexState, VectorIndex

log = logging.getLogger(__name__)

RETRY_SECONDS = 600.0  # after a failed background rebuild, before the next attempt


@dataclass
class _Task:
    thread: threading.Thread
    reason: str | None  # why it rebuilds; None when it only checkpoints


def default_memory() -> int:
    """An eighth of the machine's memory per process: the two workers of a 2-core machine stay
    within a quarter, leaving the rest to the models, the page cache (the catalog's vectors,
    read to re-rank) and other processes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 8


class FaissIndexes:
    """``index.vectors.VectorIndexes`` in this process, over base files under ``directory``."""

    def __init__(self, catalog: Catalog, directory: Path, settings: IndexSettings, serving: bool = False) -> None:
        """``serving``: this process answers searches, so it checkpoints, trims the logs and
        rebuilds in the background. Other processes (the import script) write to the catalog
        and leave all of that to the server."""
        self.catalog = catalog
        self.files = IndexFiles(directory)
        self.settings = settings
        self.serving = serving
        self.memory_bytes = settings.memory_bytes or default_memory()
        self._entries: OrderedDict[int, GalleryIndex] = OrderedDict()  # least recently used first
        self._stamps: dict[int, tuple] = {}  # each loaded gallery's pointer file as it was when loaded
        self._entries_lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self._tasks: dict[int, _Task] = {}
        self._tasks_lock = threading.Lock()
        self._retry_after: dict[int, float] = {}
        self._children: set[multiprocessing.process.BaseProcess] = set()
        self._stop = threading.Event()
        self._opened = False
        if serving:
            # one OpenMP thread per search: the request threads already run searches side by side,
            # and a 2-thread search over 100k faces measured 4x slower on a busy 2-core machine
            faiss.omp_set_num_threads(settings.search_threads)

    # -- loading --------------------------------------------------------------------------

    def _gallery(self, gid: int) -> GalleryRecord:
        return self.catalog.images.gallery(gid)

    def _stamp(self, gid: int, generation: int) -> tuple | None:
        try:
            found = self.files.pointer_path(gid, generation).stat()
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_mtime_ns

    def _open_base(self, gid: int, gallery: GalleryRecord) -> GalleryIndex | None:
        """The generation's base file, mapped, with no overlay yet; None when there is none."""
        generation = gallery.index_generation
        pointer = self.files.pointer(gid, generation)
        if pointer is not None:
            state = IndexState(**copy.deepcopy(pointer.state))
            path = self.files.directory / pointer.file
            codes = self.files.directory / pointer.codes if pointer.codes else None
            try:
                base = VectorIndex.load(path, replace(state, extra=dict(state.extra)), codes)
            except (OSError, RuntimeError, ValueError) as exc:  # damaged: rebuilt from the catalog, never fatal
                log.warning("index base %s unreadable (%s); rebuilding from the catalog", path, exc)
                return None
            base.set_nprobe(self.settings.nprobe)
            return GalleryIndex(state, generation, base, path, pointer.lists_offset)
        legacy = self.files.legacy_path(gid, generation)
        if legacy.exists():
            with contextlib.suppress(Exception):  # unreadable: rebuilt like a lost one
                old = VectorIndex.load_legacy(legacy)
                if old.state.kind == FLAT:
                    return GalleryIndex(copy.deepcopy(old.state), generation, old)
        return None

    def _built(self, gid: int) -> GalleryIndex | None:
        """The gallery built afresh from the catalog: kept as an overlay while small, written as
        the generation's base file (under the gallery's lock) when large."""
        gallery = self._gallery(gid)
        if gallery.dim is None:
            return None
        if gallery.faces < self.settings.ivf_threshold:
            index = GalleryIndex(IndexState(kind=FLAT, dim=gallery.dim), gallery.index_generation)
            with self.catalog.log.scan(gid, BATCH) as (snapshot, batches):
                for ids, vectors in batches:
                    index.overlay.add(ids, vectors)
                index.state.seq = snapshot.seq
            return index
        with self.files.lock(gid) as _:
            built = build_index(self.catalog, gid, self.settings)
            if built is None:
                return None
            snapshot, made = built
            write_base(self.files, gid, snapshot.index_generation, snapshot, made)
        return self._open_base(gid, self._gallery(gid))

    def _load(self, gid: int) -> GalleryIndex | None:
        """The gallery's index as of now: its base file, or a build from the catalog when the base
        is missing, damaged, of another embedding dimension or behind a trimmed log; then the
        changes logged since."""
        gallery = self._gallery(gid)
        if gallery.dim is None:
            return None
        stamp = self._stamp(gid, gallery.index_generation)
        index = self._open_base(gid, gallery)
        if index is not None and index.state.dim != gallery.dim:
            index = None
        if index is None:
            index = GalleryIndex(IndexState(kind=FLAT, dim=gallery.dim), gallery.index_generation)
        batch = self.catalog.log.since(gid, index.seq)
        if not batch.bridges(index.seq, gallery.seq):
            log.info("gallery %d: the log does not reach back to its index; building it from the catalog", gid)
            index = self._built(gid)
            stamp = self._stamp(gid, gallery.index_generation)
            if index is None:
                return None
            batch = self.catalog.log.since(gid, index.seq)
        index.apply(batch)
        self._stamps[gid] = stamp
        return index

    def _entry(self, gid: int, gallery: GalleryRecord | None = None) -> GalleryIndex | None:
        """The loaded index, loading it (once, whatever the number of threads asking) if needed,
        and switching to a newer base file or generation written by any process.

        Mapping a large base file takes seconds (3.4 s at three million faces, measured), and a
        checkpoint's new base file holds what the index in use already has: while one thread
        switches to it, the others go on with the index in use (``_current`` catches it up from
        the log) rather than wait.
        """
        loading = self._loading_lock(gid)
        with self._entries_lock:
            entry = self._entries.get(gid)
        generation = (gallery or self._gallery(gid)).index_generation
        unchanged = entry is not None and entry.generation == generation
        if unchanged and self._stamps.get(gid) == self._stamp(gid, generation):
            self._touch(gid)
            return entry
        if not loading.acquire(blocking=not unchanged):
            return entry
        try:
            with self._entries_lock:
                current = self._entries.get(gid)
            if current is not None and current is not entry:
                return current  # another thread switched it meanwhile
            fresh = self._load(gid)
            if fresh is not None and entry is not None and fresh.generation != entry.generation:
                log.info("gallery %d: index generation %d in use", gid, fresh.generation)
            self._switch(gid, fresh)
            return fresh
        finally:
            loading.release()

    def _loading_lock(self, gid: int) -> threading.Lock:
        """Held by the one thread that loads or switches the gallery's index."""
        with self._entries_lock:
            return self._loading.setdefault(gid, threading.Lock())

    def _switch(self, gid: int, fresh: GalleryIndex | None) -> None:
        """Make ``fresh`` the gallery's index, its ``pq4`` base packed first (outside any lock:
        it takes seconds at millions of faces). When ``fresh`` is a checkpoint of the index in
        use, it takes over that index's packed copy instead (``VectorIndex.carry``), so that the
        process never holds two: the copy is changed while no search runs on the index in use,
        which is then retired, and a search that reaches it afterwards goes to ``fresh``."""
        with self._entries_lock:
            previous = self._entries.get(gid)
        base = fresh.base if fresh is not None else None
        carry = None
        if base is not None and previous is not None and previous.base is not None:
            carry = base.carry(previous.base)
        if carry is None:
            if base is not None:
                base.searched()
            self._admit(gid, fresh)
            return
        with previous.lock.write():
            carry()
            previous.retired = True
            self._admit(gid, fresh)

    def _admit(self, gid: int, entry: GalleryIndex | None) -> None:
        """Make ``entry`` the gallery's index, dropping the least recently used others while the
        loaded indexes would exceed the memory budget."""
        with self._entries_lock:
            if entry is None:
                self._entries.pop(gid, None)
                return
            self._entries[gid] = entry
            self._entries.move_to_end(gid)
            total = sum(index.nbytes for index in self._entries.values())
            for other in list(self._entries):
                if total <= self.memory_bytes:
                    break
                if other != gid and self._idle(other):
                    total -= self._entries.pop(other).nbytes
                    log.info("gallery %d: index dropped from memory (budget %d bytes)", other, self.memory_bytes)

    def _idle(self, gid: int) -> bool:
        task = self._tasks.get(gid)
        return task is None or not task.thread.is_alive()

    def _touch(self, gid: int) -> None:
        with self._entries_lock:
            if gid in self._entries:
                self._entries.move_to_end(gid)

    def _current(self, gid: int) -> GalleryIndex | None:
        """The gallery's index, caught up with every committed change."""
        gallery = self._gallery(gid)
        entry = self._entry(gid, gallery)
        if entry is not None and not self._catch_up(gid, entry, gallery):
            # another process's checkpoint trimmed the log past this index: load it afresh (the
            # new base file holds the changes)
            self._admit(gid, None)
            entry = self._entry(gid, gallery)
        if entry is None:
            return None
        if self.serving:
            self._keep_up(gid, entry, gallery)
        return entry

    def _catch_up(self, gid: int, entry: GalleryIndex, gallery: GalleryRecord) -> bool:
        """Replay the changes logged since the index's seq; False when the log no longer reaches
        back that far."""
        if entry.seq >= gallery.seq:
            return True
        with entry.lock.write():
            if entry.seq >= gallery.seq:
                return True
            batch = self.catalog.log.since(gid, entry.seq)
            if not batch.bridges(entry.seq, gallery.seq):
                return False
            before = entry.count
            removed = entry.apply(batch)
        if entry.state.kind == IVF and removed > self.settings.compact_fraction * max(before, 1):
            self.request_rebuild(gid, f"compaction: {removed} of {before} vectors removed at once")
        return True

    def _keep_up(self, gid: int, entry: GalleryIndex, gallery: GalleryRecord) -> None:
        """Rebuild when the index is the wrong kind or drifted; checkpoint a large overlay."""
        reason = rebuild_reason(entry.state, gallery.faces, self.settings)
        if reason is not None and time.monotonic() >= self._retry_after.get(gid, 0.0):
            self.request_rebuild(gid, reason)
        elif len(entry.overlay) >= self.settings.fold_after:
            self._start_task(gid, None)

    def sync(self, gid: int) -> None:
        """Bring the gallery's index up to the latest committed change.

        A non-serving process only keeps up the indexes it has already loaded (to search).
        """
        if self.serving or gid in self._entries:
            self._current(gid)

    # -- answering ------------------------------------------------------------------------

    def search(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) per query, after catching up with every committed change; a
        compressed index's candidates are scored with the exact vectors from the catalog."""
        while True:  # again if the index was retired while this search waited for it (``_switch``)
            entry = self._current(gid)
            if entry is None or entry.count == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            with entry.lock.read():
                if not entry.retired:
                    return entry.search(queries, k, self.settings, lambda ids: self.catalog.images.vectors(gid, ids))

    def status(self, gid: int) -> IndexStatus:
        entry = self._current(gid)
        committed = self._gallery(gid).index_generation
        task = self._running(gid)
        rebuilding = task is not None and task.reason is not None
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
        with self._entries_lock:
            for entry in self._entries.values():
                if entry.base is not None:
                    entry.base.set_nprobe(self.settings.nprobe)

    def loaded(self) -> list[int]:
        """The galleries whose index this process holds now, least recently used first."""
        with self._entries_lock:
            return list(self._entries)

    def ready(self) -> bool:
        """Every gallery is loaded or loadable: start-up has looked at each one."""
        return self._opened

    # -- checkpoints -------------------------------------------------------------------------

    def save_all(self) -> int:
        """Checkpoint every loaded gallery with changes beside its base file; how many were written.

        Several processes serve one data directory (gunicorn workers); the gallery's lock (the
        one rebuilds hold) makes their checkpoints take turns, and a process that finds it
        taken leaves that gallery to the holder.
        """
        with self._entries_lock:
            loaded = list(self._entries)
        return sum(self._checkpoint(gid) for gid in loaded)

    def _checkpoint(self, gid: int) -> bool:
        """Fold the gallery's overlay into a new base file, trim its log, and use the new file.

        The fold reads a copy of the overlay and the base file, which never changes, so adds and
        searches go on meanwhile without waiting; it never holds the index twice in memory.
        This thread then switches to the new file itself, holding the gallery's loading lock
        from before the file is published: a request arriving meanwhile goes on with the index
        in use instead of taking the switch on (an add waited 142 ms for it at three million
        faces). The lock is only tried here, never waited for, under the file lock.
        """
        with self._entries_lock:
            entry = self._entries.get(gid)
        if entry is None or not len(entry.overlay):
            return False
        loading = self._loading_lock(gid)
        with contextlib.ExitStack() as release:
            with self.files.lock(gid, wait=False) as held:
                on_disk = self.files.pointer(gid, entry.generation) if held else None
                if not held or (on_disk is not None and on_disk.state["seq"] >= entry.seq):
                    return False  # another process holds the gallery, or has written as much already
                with entry.lock.read():
                    frozen = entry.frozen()
                pointer = frozen.fold(self.files, gid)
                if self._gallery(gid).index_generation != frozen.generation:
                    return False  # a rebuild committed meanwhile; its generation replaces this one
                switching = loading.acquire(blocking=False)  # else another thread loads: it finds the new file
                if switching:
                    release.callback(loading.release)
                self.files.write_pointer(gid, frozen.generation, pointer)
                self.catalog.log.trim(gid, frozen.seq)
                self.files.remove_unused(gid, frozen.generation)
            if switching:  # after the file lock, which loading takes if it has to rebuild
                self._switch(gid, self._load(gid))
        return True

    def _autosave(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.save_all()
            except Exception:  # keep checkpointing after a transient failure (disk full)
                log.exception("index checkpoint failed")

    # -- background rebuilds -----------------------------------------------------------------

    def _running(self, gid: int) -> _Task | None:
        task = self._tasks.get(gid)
        return task if task is not None and task.thread.is_alive() else None

    def request_rebuild(self, gid: int, reason: str) -> bool:
        """Rebuild the gallery's index in the background (serving processes only); False if
        one is already under way, since its result will be checked again once adopted."""
        return self.serving and self._start_task(gid, reason)

    def _start_task(self, gid: int, reason: str | None) -> bool:
        with self._tasks_lock:
            if self._stop.is_set() or self._running(gid) is not None:
                return False
            thread = threading.Thread(target=self._run_task, args=(gid, reason), name=f"index-{gid}", daemon=True)
            self._tasks[gid] = _Task(thread, reason)
            thread.start()
            return True

    def _run_task(self, gid: int, reason: str | None) -> None:
        try:
            if reason is None:
                self._checkpoint(gid)
                return
            log.info("gallery %d: rebuilding index (%s)", gid, reason)
            self._rebuild_in_child(gid)
            if not self._stop.is_set():
                self._current(gid)  # adopt the new generation now rather than at the next search
        except Exception:
            self._retry_after[gid] = time.monotonic() + RETRY_SECONDS
            log.exception("gallery %d: background index task failed", gid)

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
        """Wait for the gallery's background rebuild or checkpoint, if one is running."""
        deadline = time.monotonic() + timeout
        while (task := self._running(gid)) is not None:
            task.thread.join(max(0.0, deadline - time.monotonic()))
            if task.thread.is_alive():
                raise TimeoutError(f"gallery {gid}: background index task still running after {timeout}s")

    # -- maintenance ---------------------------------------------------------------------------

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
        generation = staged.gallery.index_generation + 1
        write_base(self.files, gid, generation, staged.gallery, index)
        try:
            self.catalog.staging.swap(gid, pack, dim, staged.gallery.seq, staged.gallery.index_generation)
        except StagingIncompleteError:
            return False
        self.files.remove_unused(gid, generation)
        return True

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
                self._switch(gid, self._built(gid))
        self._opened = True
        if self.serving and self.settings.save_seconds > 0:
            threading.Thread(target=self._autosave, args=(self.settings.save_seconds,), daemon=True).start()

    def close(self) -> None:
        """Stop background rebuilds (their files are cleaned by the next one) and checkpoint."""
        with self._tasks_lock:
            self._stop.set()
            for child in self._children:
                child.terminate()
            tasks = [task.thread for task in self._tasks.values()]
        for thread in tasks:
            thread.join()
        if self.serving:
            self.save_all()
