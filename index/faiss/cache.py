"""The galleries' indexes this process holds: loaded on first use, switched to a newer base
file or generation written by any process, caught up with the change log, and the least
recently used dropped once the loaded ones pass the memory budget.

Locks (their order: ``galleries.py``): ``_loading[gid]``, held by the one thread that loads
or switches a gallery's index; ``_entries_lock``, a leaf held only to read or change the map.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from ..catalog import Catalog
from ..records import GalleryRecord
from ..vectors import IndexSettings
from .files import IndexFiles
from .gallery import GalleryIndex
from .rebuild import BATCH, build_index, write_base
from .vector_index import FLAT, IndexState, VectorIndex

log = logging.getLogger(__name__)


def default_memory() -> int:
    """An eighth of the machine's memory per process: the two workers of a 2-core machine stay
    within a quarter, leaving the rest to the models, the page cache (the catalog's vectors,
    read to re-rank) and other processes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 8


class GalleryCache:
    def __init__(
        self,
        catalog: Catalog,
        files: IndexFiles,
        settings: Callable[[], IndexSettings],
        busy: Callable[[int], bool],
    ) -> None:
        """``settings``: those in force (``FaissIndexes.tune`` changes the search-time ones);
        ``busy(gid)``: a background task works on the gallery, so it is not dropped."""
        self.catalog = catalog
        self.files = files
        self.settings = settings
        self.busy = busy
        self.memory_bytes = settings().memory_bytes or default_memory()
        self._entries: OrderedDict[int, GalleryIndex] = OrderedDict()  # least recently used first
        self._stamps: dict[int, tuple[int, int] | None] = {}  # each loaded gallery's pointer file when loaded
        self._entries_lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    def gallery(self, gid: int) -> GalleryRecord:
        return self.catalog.images.gallery(gid)

    def loaded(self) -> list[int]:
        """The galleries whose index this process holds now, least recently used first."""
        with self._entries_lock:
            return list(self._entries)

    def held(self, gid: int) -> GalleryIndex | None:
        """The gallery's index if this process holds it, without loading or touching it."""
        with self._entries_lock:
            return self._entries.get(gid)

    def set_nprobe(self, nprobe: int) -> None:
        with self._entries_lock:
            for entry in self._entries.values():
                if entry.base is not None:
                    entry.base.set_nprobe(nprobe)

    # -- loading --------------------------------------------------------------------------

    def _stamp(self, gid: int, generation: int) -> tuple[int, int] | None:
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
            base.set_nprobe(self.settings().nprobe)
            return GalleryIndex(state, generation, base, path, pointer.lists_offset)
        legacy = self.files.legacy_path(gid, generation)
        if legacy.exists():
            with contextlib.suppress(Exception):  # unreadable: rebuilt like a lost one
                old = VectorIndex.load_legacy(legacy)
                if old.state.kind == FLAT:
                    return GalleryIndex(copy.deepcopy(old.state), generation, old)
        return None

    def built(self, gid: int) -> GalleryIndex | None:
        """The gallery built afresh from the catalog: kept as an overlay while small, written as
        the generation's base file (under the gallery's lock) when large."""
        gallery = self.gallery(gid)
        if gallery.dim is None:
            return None
        settings = self.settings()
        if gallery.faces < settings.ivf_threshold:
            index = GalleryIndex(IndexState(kind=FLAT, dim=gallery.dim), gallery.index_generation)
            with self.catalog.log.scan(gid, BATCH) as (snapshot, batches):
                for ids, vectors in batches:
                    index.overlay.add(ids, vectors)
                index.state.seq = snapshot.seq
            return index
        with self.files.lock(gid) as _:
            made = build_index(self.catalog, gid, settings)
            if made is None:
                return None
            snapshot, index_made = made
            write_base(self.files, gid, snapshot.index_generation, snapshot, index_made)
        return self._open_base(gid, self.gallery(gid))

    def load(self, gid: int) -> GalleryIndex | None:
        """The gallery's index as of now: its base file, or a build from the catalog when the base
        is missing, damaged, of another embedding dimension or behind a trimmed log; then the
        changes logged since."""
        gallery = self.gallery(gid)
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
            rebuilt = self.built(gid)
            stamp = self._stamp(gid, gallery.index_generation)
            if rebuilt is None:
                return None
            index = rebuilt
            batch = self.catalog.log.since(gid, index.seq)
        index.apply(batch)
        self._stamps[gid] = stamp
        return index

    def entry(self, gid: int, gallery: GalleryRecord | None = None) -> GalleryIndex | None:
        """The loaded index, loading it (once, whatever the number of threads asking) if needed,
        and switching to a newer base file or generation written by any process.

        Mapping a large base file takes seconds, and a checkpoint's new base file holds what the
        index in use already has: while one thread switches to it, the others go on with the index
        in use (``catch_up`` brings it up to date from the log) rather than wait.
        """
        loading = self.loading_lock(gid)
        with self._entries_lock:
            entry = self._entries.get(gid)
        generation = (gallery or self.gallery(gid)).index_generation
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
            fresh = self.load(gid)
            if fresh is not None and entry is not None and fresh.generation != entry.generation:
                log.info("gallery %d: index generation %d in use", gid, fresh.generation)
            self.switch(gid, fresh)
            return fresh
        finally:
            loading.release()

    def loading_lock(self, gid: int) -> threading.Lock:
        """Held by the one thread that loads or switches the gallery's index."""
        with self._entries_lock:
            return self._loading.setdefault(gid, threading.Lock())

    def switch(self, gid: int, fresh: GalleryIndex | None) -> None:
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
            self.admit(gid, fresh)
            return
        assert previous is not None
        with previous.lock.write():
            carry()
            previous.retired = True
            self.admit(gid, fresh)

    def admit(self, gid: int, entry: GalleryIndex | None) -> None:
        """Make ``entry`` the gallery's index (None: drop it), dropping the least recently used
        others while the loaded indexes would exceed the memory budget."""
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
                if other != gid and not self.busy(other):
                    total -= self._entries.pop(other).nbytes
                    log.info("gallery %d: index dropped from memory (budget %d bytes)", other, self.memory_bytes)

    def _touch(self, gid: int) -> None:
        with self._entries_lock:
            if gid in self._entries:
                self._entries.move_to_end(gid)

    def catch_up(self, gid: int, entry: GalleryIndex, gallery: GalleryRecord) -> tuple[int, int] | None:
        """Replay the changes logged since the index's seq: (faces removed, faces before); None
        when the log no longer reaches back that far."""
        if entry.seq >= gallery.seq:
            return 0, entry.count
        with entry.lock.write():
            if entry.seq >= gallery.seq:
                return 0, entry.count
            batch = self.catalog.log.since(gid, entry.seq)
            if not batch.bridges(entry.seq, gallery.seq):
                return None
            before = entry.count
            return entry.apply(batch), before
