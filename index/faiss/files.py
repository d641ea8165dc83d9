"""A gallery's index files on disk, and the lock that lets one writer at a time change them.

An index generation's vectors live in immutable base files, ``gallery-<g>.g<gen>.s<seq>.faiss``
(a plain FAISS file holding the gallery as of change ``seq``, so every process can
memory-map it and share its pages; a large gallery's has a ``.codes`` file beside it, its
second code), and a small pointer, ``gallery-<g>.g<gen>.json``, names
the base file in use and carries the index's state. A checkpoint or a rebuild writes a new
base file first, then swaps the pointer by rename: whatever kills it, the pointer names a
complete file. The gallery's current generation is kept in the catalog.

The lock is an ``flock`` on a per-gallery file: the kernel drops it when its holder dies,
even by SIGKILL, so a killed writer never blocks the next one. Rebuilds, re-embeddings and
checkpoint writers (of any process) hold it; holding it also pins the change log, which is
only trimmed by a lock holder, so a rebuild's snapshot can always be brought up to date.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pointer:
    """What a generation's pointer file says: the base file in use and the index's state."""

    file: str
    state: dict
    lists_offset: int | None = None  # where an IVF base's inverted lists start (for streaming writes)
    codes: str | None = None  # the base's second code (``index.faiss.refine``), if it has one


class IndexFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def pointer_path(self, gid: int, generation: int) -> Path:
        return self.directory / f"gallery-{gid}.g{generation}.json"

    def base_path(self, gid: int, generation: int, seq: int) -> Path:
        return self.directory / f"gallery-{gid}.g{generation}.s{seq}.faiss"

    def legacy_path(self, gid: int, generation: int) -> Path:
        """A checkpoint in the format before base files: a JSON header, then the FAISS index."""
        return self.directory / f"gallery-{gid}.g{generation}.faiss"

    def pointer(self, gid: int, generation: int) -> Pointer | None:
        """The generation's pointer, or None when there is none (or it is damaged)."""
        try:
            return Pointer(**json.loads(self.pointer_path(gid, generation).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def temp(self, final: Path) -> Path:
        """A temp name unique to this process, so writers of several processes never share one."""
        return final.with_name(f"{final.name}.tmp.{os.getpid()}")

    def write_pointer(self, gid: int, generation: int, pointer: Pointer) -> None:
        """Swap the pointer in atomically (temp file, fsync, rename, directory fsync)."""
        final = self.pointer_path(gid, generation)
        tmp = self.temp(final)
        with open(tmp, "w") as handle:
            json.dump(asdict(pointer), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        self.sync()

    def sync(self) -> None:
        """Make renames and deletions in the directory durable."""
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _files(self, gid: int) -> Iterator[tuple[Path, int]]:
        """Every index file of the gallery with the generation it belongs to."""
        pattern = re.compile(rf"gallery-{gid}\.g(\d+)[.]")
        for path in self.directory.glob(f"gallery-{gid}.g*"):
            match = pattern.match(path.name)
            if match:
                yield path, int(match.group(1))

    def remove_unused(self, gid: int, generation: int) -> None:
        """Drop what nothing will load again: older generations, base files the current pointer
        does not name, and temp files of killed writers. Only called with the gallery's lock held.

        A process still searching an unlinked base file keeps it: the kernel frees its pages
        once the last mapping is gone.
        """
        pointer = self.pointer(gid, generation)
        named = [pointer.file, pointer.codes] if pointer is not None else []
        keep = {self.pointer_path(gid, generation).name, *filter(None, named)}
        for path, number in self._files(gid):
            stale = number == generation and pointer is not None and path.name not in keep
            if ".tmp." in path.name or number < generation or stale:
                path.unlink(missing_ok=True)

    def remove_newer(self, gid: int, generation: int) -> None:
        """Drop the files of generations never committed (a rebuild killed before its commit)."""
        for path, number in self._files(gid):
            if number > generation:
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, gid: int, wait: bool = True) -> Iterator[bool]:
        """Hold the gallery's lock; yields False at once if ``wait`` is off and it is taken."""
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
