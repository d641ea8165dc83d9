"""A gallery's index files on disk, and the lock that lets one rebuild run at a time.

Each file belongs to an index generation (``gallery-<id>.g<generation>.faiss``); the
gallery's current generation is kept in LMDB. A rebuild writes the next generation's
file beside the one in use and only then moves LMDB to it, so whatever kills it, the
generation in LMDB names a complete file or one that is simply absent.

The lock is an ``flock`` on a per-gallery file: the kernel drops it when its holder dies,
even by SIGKILL, so a killed rebuild never blocks the next one. Holding it also pins the
change log: a server trims a gallery's log only while it can take the lock itself, so a
rebuild's snapshot can always be brought up to date by replaying the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

SAVE_TMP = ".tmp"  # a server's checkpoint being written
REBUILD_TMP = ".rebuild.tmp"  # a rebuild's new index being written


class IndexFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, gid: int, generation: int) -> Path:
        return self.directory / f"gallery-{gid}.g{generation}.faiss"

    def generations(self, gid: int) -> dict[int, Path]:
        pattern = re.compile(rf"gallery-{gid}\.g(\d+)\.faiss$")
        found = {}
        for path in self.directory.glob(f"gallery-{gid}.g*.faiss"):
            match = pattern.match(path.name)
            if match:
                found[int(match.group(1))] = path
        return found

    def remove_older(self, gid: int, generation: int) -> None:
        """Drop files of generations before ``generation``: nothing will load them again."""
        for number, path in self.generations(gid).items():
            if number < generation:
                path.unlink(missing_ok=True)

    def remove_abandoned(self, gid: int, generation: int) -> None:
        """Drop what a killed rebuild left: temp files and files of generations never committed.

        Only called with the gallery's lock held, so no live rebuild is writing them.
        """
        for path in self.directory.glob(f"gallery-{gid}.g*.faiss{REBUILD_TMP}"):
            path.unlink(missing_ok=True)
        for number, path in self.generations(gid).items():
            if number > generation:
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, gid: int, wait: bool = True) -> Iterator[bool]:
        """Hold the gallery's rebuild lock; yields False at once if ``wait`` is off and it is taken."""
        fd = os.open(self.directory / f"gallery-{gid}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock
