"""Where the stored photos live: a small interface, and the local-directory implementation.

File names are generated here (random, with a fixed set of extensions) and never taken
from a request, so no request can name a path outside the photo directory. The
interface is what an object store would implement; the directory may be shared by
several machines (a network filesystem) as long as it keeps rename and fsync atomic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# A photo file is written (and fsynced) milliseconds before its record commits. A file with no
# record is an orphan only once it is older than this: another process (a worker, an import)
# may be about to commit the record of a younger one.
ORPHAN_GRACE_SECONDS = 3600.0

# A photo's thumbnail is kept beside it under the photo's name and this suffix: it is live
# while its photo is, goes when the photo is deleted, and is pinned and backed up with it.
THUMBNAIL_SUFFIX = ".thumb.jpg"

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/gif": "gif",
}


class PhotoStore(Protocol):
    def write(self, gallery: int, data: bytes, content_type: str) -> str:
        """Store the photo durably before returning its name (OSError when it cannot)."""
        ...

    def read(self, name: str) -> bytes:
        """The photo's bytes; FileNotFoundError when it is gone."""
        ...

    def delete(self, name: str) -> None:
        """Remove the photo and its thumbnail; a missing one is not an error."""
        ...

    def read_thumbnail(self, name: str) -> bytes:
        """The thumbnail kept for the photo ``name``; FileNotFoundError when none was made yet."""
        ...

    def write_thumbnail(self, name: str, data: bytes) -> None:
        """Keep ``data`` as the thumbnail of the photo ``name``, durably (OSError when it cannot)."""
        ...

    def remove_orphans(self, live: Callable[[], set[str]], grace: float = ORPHAN_GRACE_SECONDS) -> int:
        """Delete photos older than ``grace`` seconds that no image record names (``live()``
        gives the names, read after the photos were listed): left by a crash between photo
        and record; and thumbnails whose photo is gone."""
        ...

    def pin(self, into: Path) -> int:
        """Keep every photo there is now under ``into``, out of reach of later deletes (a
        backup copies from there); how many."""
        ...


class PhotoFiles:
    """``PhotoStore`` in a local (or mounted) directory, one folder per gallery."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, gallery: int, data: bytes, content_type: str) -> str:
        """Write the photo with fsync before rename, then fsync its directory (and the root,
        for a gallery's first photo), so both the bytes and the name survive a power cut;
        returns the name relative to the root."""
        folder = self.root / str(gallery)
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            _fsync_directory(self.root)
        name = f"{gallery}/{secrets.token_hex(12)}.{EXTENSIONS[content_type]}"
        _write_durably(self.root / name, data)
        return name

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def delete(self, name: str) -> None:
        for path in (self.root / name, self.root / (name + THUMBNAIL_SUFFIX)):
            path.unlink(missing_ok=True)

    def read_thumbnail(self, name: str) -> bytes:
        return (self.root / (name + THUMBNAIL_SUFFIX)).read_bytes()

    def write_thumbnail(self, name: str, data: bytes) -> None:
        _write_durably(self.root / (name + THUMBNAIL_SUFFIX), data)

    def remove_orphans(self, live: Callable[[], set[str]], grace: float = ORPHAN_GRACE_SECONDS) -> int:
        """Delete old files no image record points to (photos and temp files of killed writes).

        The files are listed before the records are read, so a record committed meanwhile is
        seen; files younger than ``grace`` are left for the next sweep, whatever their state.
        """
        cutoff = time.time() - grace
        old = []
        for path in self.root.glob("*/*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    old.append(path)
        names = live()
        removed = 0
        for path in old:
            if path.relative_to(self.root).as_posix().removesuffix(THUMBNAIL_SUFFIX) not in names:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed %d orphan photo files older than %.0f s", removed, grace)
        return removed

    def pin(self, into: Path) -> int:
        """Hard links: instant, and a photo deleted afterwards keeps its bytes under ``into``.
        Photos are never changed once written, so a link is as good as a copy."""
        pinned = 0
        for path in self.root.glob("*/*"):
            if path.name.startswith("."):
                continue  # a write in progress
            target = into / path.relative_to(self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                try:
                    os.link(path, target)
                except OSError:  # another filesystem: a copy then
                    shutil.copy2(path, target)
                pinned += 1
        return pinned


def _write_durably(final: Path, data: bytes) -> None:
    """Write with fsync before rename, then fsync the directory, so both the bytes and the
    name survive a power cut. The temporary name is unique: two requests making the same
    thumbnail at once each rename a whole file into place."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(final.parent)


class _DirectorySyncs:
    """fsync of a directory, shared by the threads that need one at once (group commit of the
    entries). A caller's entry is durable after any fsync of its directory that began after the
    entry was made: each caller takes a ticket once its entry is in place, and an fsync covers
    every ticket taken before it began. Callers queued behind an fsync that does not cover them
    find, once they hold the directory's lock, that the next one (started by the first of them)
    covered them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[Path, tuple[threading.Lock, list[int]]] = {}  # folder: (lock, [taken, synced])

    KEPT = 1024  # folders remembered; forgetting one only costs the sharing of its next fsync

    def sync(self, folder: Path) -> None:
        with self._lock:
            if len(self._folders) >= self.KEPT and folder not in self._folders:
                self._folders.clear()  # a thread in a forgotten folder's fsync keeps its own entry
            lock, tickets = self._folders.setdefault(folder, (threading.Lock(), [0, 0]))
            tickets[0] += 1
            ticket = tickets[0]
        with lock:
            if tickets[1] >= ticket:
                return
            with self._lock:
                covered = tickets[0]
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            tickets[1] = covered


_directory_syncs = _DirectorySyncs()


def _fsync_directory(folder: Path) -> None:
    """Make a rename or a new entry in ``folder`` durable (sharing an fsync with other threads
    of this process that made entries there meanwhile)."""
    _directory_syncs.sync(folder)
