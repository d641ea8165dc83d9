"""One in-memory FAISS index per gallery, kept in step with LMDB through the change log.

Before every search the index replays the gallery's changes it has not yet seen, so a
write made by this process, by another one (a bulk import script) or before a crash is
reflected without any second channel. Saved index files are checkpoints: each records
the change it reflects, and the log up to that point can then be trimmed. A missing,
stale or damaged checkpoint only costs a reload from the faces in LMDB.

A rebuild (``index.rebuild``), whether run by ``scripts/rebuild_index.py`` or by the
server itself in a child process, ends by moving the gallery in LMDB to a new index
generation. A serving process notices that at its next sync, loads the new file in a
background thread while the old index keeps answering, swaps it in under the write lock
and replays the changes made since the rebuild's snapshot.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import IndexFiles
from .locks import ReadWriteLock
from .rebuild import EXIT_BUSY, now_iso, rebuild_in_child, rebuild_reason
from .records import GalleryRecord
from .store import Store
from .vectors import IVF, IndexSettings, VectorIndex

log = logging.getLogger(__name__)

RETRY_SECONDS = 600.0  # after a failed background rebuild, before the next attempt


@dataclass
class _Entry:
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    index: VectorIndex | None = None
    generation: int = 0  # the LMDB index generation ``index`` belongs to
    saved: tuple[int, int] = (-1, -1)  # (generation, seq) of the last checkpoint written
    task: threading.Thread | None = None  # background rebuild or adoption, one at a time
    rebuild: str | None = None  # why the running task rebuilds, None when it only adopts
    retry_after: float = 0.0


class GalleryIndexes:
    def __init__(self, store: Store, directory: Path, settings: IndexSettings, serving: bool = False) -> None:
        """``serving``: this process answers searches, so it keeps every gallery's index loaded,
        checkpoints it, trims the logs and rebuilds in the background. Other processes (the
        import script) write to LMDB only and leave all of that to the server."""
        self.store = store
        self.files = IndexFiles(directory)
        self.settings = settings
        self.serving = serving
        self._entries: dict[int, _Entry] = {}
        self._entries_lock = threading.Lock()
        self._tasks_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._children: set[multiprocessing.process.BaseProcess] = set()
        self._stop = threading.Event()

    def path(self, gid: int) -> Path:
        """The checkpoint file of the gallery's current index generation."""
        return self.files.path(gid, self.store.gallery(gid).index_generation)

    def _entry(self, gid: int) -> _Entry:
        with self._entries_lock:
            entry = self._entries.get(gid)
            if entry is None:
                generation = self.store.gallery(gid).index_generation
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
            log.warning("index checkpoint %s unreadable (%s); rebuilding from LMDB", path, exc)
            return None
        index.set_nprobe(self.settings.nprobe)
        return index

    def reload(self, gid: int) -> VectorIndex | None:
        """Build the gallery's index afresh from every live face in LMDB."""
        gallery, ids, vectors = self.store.snapshot(gid)
        if gallery.dim is None:
            return None
        index = VectorIndex.build(gallery.dim, ids, vectors, self.settings)
        index.state.seq, index.state.built_at = gallery.seq, now_iso()
        return index

    def _catch_up(self, gid: int, entry: _Entry, gallery: GalleryRecord) -> None:
        """Replay the log past the index's seq, or reload when the log cannot bridge the gap."""
        index = entry.index
        seen = index.state.seq if index is not None else 0
        changes, vectors, first = self.store.changes_since(gid, seen)
        gap = gallery.seq > seen and (first is None or first > seen + 1)
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
        gallery = self.store.gallery(gid)
        if gallery.index_generation != entry.generation:
            self._adopt_soon(gid, entry)
        with entry.lock.read():
            if entry.index is not None and entry.index.state.seq == gallery.seq:
                return entry
        with entry.lock.write():
            if entry.index is None or entry.index.state.seq != gallery.seq:
                self._catch_up(gid, entry, self.store.gallery(gid))
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
        generation = self.store.gallery(gid).index_generation
        if generation == entry.generation:
            return
        index = self._load(gid, generation)
        if index is None:  # its file is gone or damaged: the faces in LMDB are the truth
            index = self.reload(gid)
        with entry.lock.write():
            if entry.generation == generation:
                return
            entry.index, entry.generation = index, generation
            self._catch_up(gid, entry, self.store.gallery(gid))
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
            args=(
                Path(self.store.env.path()),
                self.store.env.info()["map_size"],
                self.files.directory,
                gid,
                self.settings,
            ),
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

    def describe(self, gid: int) -> dict:
        entry = self._current(gid)
        with entry.lock.read():
            index = entry.index
            running = entry.task is not None and entry.task.is_alive()
            task = {"rebuilding": running and entry.rebuild is not None, "generation": entry.generation}
            if index is None:
                return {"kind": "flat", "vectors": 0, **task}
            state = index.state
            return {
                "kind": state.kind,
                "vectors": index.count,
                "dim": state.dim,
                "lists": state.nlist,
                "nprobe": state.nprobe,
                "storage": state.extra.get("storage", "flat"),
                "trained_on": state.trained_on,
                "churn_since_training": round(index.churn(), 4),
                "last_rebuild": state.built_at,
                "seq": state.seq,
                "rebuild_needed": rebuild_reason(state, index.count, self.settings),
                **task,
            }

    def search(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) per query, after catching up with every committed change."""
        entry = self._current(gid)
        with entry.lock.read():
            if entry.index is None or entry.index.count == 0:
                empty = np.zeros((len(queries), 0))
                return empty.astype(np.float32), empty.astype(np.int64)
            return entry.index.search(queries, k)

    def verify(self, gid: int) -> bool:
        """True when the index holds exactly the gallery's live faces in LMDB."""
        entry = self._current(gid)
        expected = set(self.store.snapshot(gid)[1].tolist())
        with entry.lock.read():
            held = set(entry.index.ids().tolist()) if entry.index is not None else set()
        return held == expected

    # -- start, checkpoints, stop -------------------------------------------------------

    def open_all(self) -> None:
        """At start-up: load every gallery's checkpoint and make it agree with LMDB."""
        for gid, gallery in self.store.galleries().items():
            entry = self._current(gid)
            count = entry.index.count if entry.index is not None else 0
            if count != gallery.faces:
                log.warning("gallery %d: index holds %d faces, LMDB %d; reloading", gid, count, gallery.faces)
                with entry.lock.write():
                    entry.index = self.reload(gid)

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
        generation in LMDB was built from a snapshot this checkpoint may be past: in
        both cases the log must stay, or adopting the new index would need a full reload.
        """
        with self.files.lock(gid, wait=False) as held:
            if held and self.store.gallery(gid).index_generation == generation:
                self.store.trim_log(gid, seq)
                self.files.remove_older(gid, generation)

    def start_autosave(self, interval: float) -> threading.Thread:
        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.save_all()
                except Exception:  # keep checkpointing after a transient failure (disk full)
                    log.exception("index checkpoint failed")

        thread = threading.Thread(target=run, name="index-autosave", daemon=True)
        thread.start()
        return thread

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
