"""Background work on a serving process's galleries: rebuilds in child processes and
checkpoints in threads, one task per gallery at a time, retried a while after a failure.

A rebuild runs in a child process of its own: it has its own interpreter lock and its own
FAISS threads, so reading a million vectors and training on them does not slow the
server's searches. ``_lock`` is a leaf (the order: ``galleries.py``): it guards the task
table and the children, and nothing is waited for while it is held.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from ..catalog import Catalog
from ..vectors import IndexSettings
from .rebuild import EXIT_BUSY, rebuild_in_child

log = logging.getLogger(__name__)

RETRY_SECONDS = 600.0  # after a failed background rebuild, before the next attempt


@dataclass
class _Task:
    thread: threading.Thread
    reason: str | None  # why it rebuilds; None when it only checkpoints


class RebuildScheduler:
    def __init__(
        self,
        opener: Callable[[], Callable[[], Catalog]],
        directory: Path,
        settings: Callable[[], IndexSettings],
        checkpoint: Callable[[int], object],
        adopt: Callable[[int], object],
    ) -> None:
        """``opener()``: how the child opens the catalog; ``checkpoint(gid)``: a checkpoint
        task's work; ``adopt(gid)``: switch to the generation a rebuild committed."""
        self.opener, self.directory, self.settings = opener, directory, settings
        self.checkpoint, self.adopt = checkpoint, adopt
        self._tasks: dict[int, _Task] = {}
        self._retry_after: dict[int, float] = {}
        self._children: set[BaseProcess] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def running(self, gid: int) -> _Task | None:
        task = self._tasks.get(gid)
        return task if task is not None and task.thread.is_alive() else None

    def busy(self, gid: int) -> bool:
        return self.running(gid) is not None

    def rebuilding(self, gid: int) -> bool:
        task = self.running(gid)
        return task is not None and task.reason is not None

    def may_retry(self, gid: int) -> bool:
        """False for a while after the gallery's last background task failed."""
        return time.monotonic() >= self._retry_after.get(gid, 0.0)

    def start(self, gid: int, reason: str | None) -> bool:
        """Rebuild the gallery (``reason``) or checkpoint it (None) in the background; False when
        a task of the gallery is under way already, or the scheduler is stopping."""
        with self._lock:
            if self._stop.is_set() or self.running(gid) is not None:
                return False
            thread = threading.Thread(target=self._run, args=(gid, reason), name=f"index-{gid}", daemon=True)
            self._tasks[gid] = _Task(thread, reason)
            thread.start()
            return True

    def _run(self, gid: int, reason: str | None) -> None:
        try:
            if reason is None:
                self.checkpoint(gid)
                return
            log.info("gallery %d: rebuilding index (%s)", gid, reason)
            self._rebuild_in_child(gid)
            if not self._stop.is_set():
                self.adopt(gid)  # the new generation now rather than at the next search
        except Exception:
            self._retry_after[gid] = time.monotonic() + RETRY_SECONDS
            log.exception("gallery %d: background index task failed", gid)

    def _rebuild_in_child(self, gid: int) -> None:
        context = multiprocessing.get_context("spawn")
        child = context.Process(
            target=rebuild_in_child,
            args=(self.opener(), self.directory, gid, self.settings()),
            name=f"rebuild-{gid}",
        )
        with self._lock:
            if self._stop.is_set():
                return
            child.start()
            self._children.add(child)
        child.join()
        with self._lock:
            self._children.discard(child)
        if child.exitcode not in (0, EXIT_BUSY) and not self._stop.is_set():
            raise RuntimeError(f"rebuild process exited with {child.exitcode}")

    def wait(self, gid: int, timeout: float = 600.0) -> None:
        """Wait for the gallery's background task, if one is running."""
        deadline = time.monotonic() + timeout
        while (task := self.running(gid)) is not None:
            task.thread.join(max(0.0, deadline - time.monotonic()))
            if task.thread.is_alive():
                raise TimeoutError(f"gallery {gid}: background index task still running after {timeout}s")

    def stop(self) -> None:
        """Start no more tasks, kill the rebuild children (the next rebuild cleans up after them)
        and wait for the task threads."""
        with self._lock:
            self._stop.set()
            for child in self._children:
                child.terminate()
            tasks = [task.thread for task in self._tasks.values()]
        for thread in tasks:
            thread.join()
