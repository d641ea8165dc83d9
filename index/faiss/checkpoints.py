"""Checkpoints: a gallery's overlay folded into its next base file, and the log trimmed.

Several processes serve one data directory (gunicorn workers); the gallery's file lock (the
one rebuilds hold) makes their checkpoints take turns, and a process that finds it taken
leaves that gallery to the holder. The lock order is written down in ``galleries.py``.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from ..catalog import Catalog
from .cache import GalleryCache
from .files import IndexFiles

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, catalog: Catalog, files: IndexFiles, cache: GalleryCache) -> None:
        self.catalog, self.files, self.cache = catalog, files, cache
        self._stop = threading.Event()

    def save_all(self) -> int:
        """Checkpoint every loaded gallery with changes beside its base file; how many were written."""
        return sum(self.checkpoint(gid) for gid in self.cache.loaded())

    def checkpoint(self, gid: int) -> bool:
        """Fold the gallery's overlay into a new base file, trim its log, and use the new file.

        The fold reads a copy of the overlay and the base file, which never changes, so adds and
        searches go on meanwhile without waiting; it never holds the index twice in memory.
        This thread then switches to the new file itself, holding the gallery's loading lock
        from before the file is published: a request arriving meanwhile goes on with the index
        in use instead of taking the switch on (and waiting for a large file to be mapped). The
        loading lock is only tried here, never waited for, under the file lock: the thread that
        loads takes them in the other order.
        """
        entry = self.cache.held(gid)
        if entry is None or not len(entry.overlay):
            return False
        loading = self.cache.loading_lock(gid)
        with contextlib.ExitStack() as release:
            with self.files.lock(gid, wait=False) as held:
                on_disk = self.files.pointer(gid, entry.generation) if held else None
                if not held or (on_disk is not None and on_disk.state["seq"] >= entry.seq):
                    return False  # another process holds the gallery, or has written as much already
                with entry.lock.read():
                    frozen = entry.frozen()
                pointer = frozen.fold(self.files, gid)
                if self.cache.gallery(gid).index_generation != frozen.generation:
                    return False  # a rebuild committed meanwhile; its generation replaces this one
                switching = loading.acquire(blocking=False)  # else another thread loads: it finds the new file
                if switching:
                    release.callback(loading.release)
                self.files.write_pointer(gid, frozen.generation, pointer)
                self.catalog.log.trim(gid, frozen.seq)
                self.files.remove_unused(gid, frozen.generation)
            if switching:  # after the file lock, which loading takes if it has to rebuild
                self.cache.switch(gid, self.cache.load(gid))
        return True

    def start(self, interval: float) -> None:
        """Checkpoint every loaded gallery every ``interval`` seconds, in a thread of its own."""
        threading.Thread(target=self._every, args=(interval,), name="index-checkpoints", daemon=True).start()

    def _every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.save_all()
            except Exception:  # keep checkpointing after a transient failure (disk full)
                log.exception("index checkpoint failed")

    def stop(self) -> None:
        self._stop.set()
