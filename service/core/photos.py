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
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

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
        """Remove the photo; a missing one is not an error."""
        ...

    def remove_orphans(self, live: set[str]) -> int:
        """Delete photos no image record names (left by a crash between photo and record)."""
        ...


class PhotoFiles:
    """``PhotoStore`` in a local (or mounted) directory, one folder per gallery."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, gallery: int, data: bytes, content_type: str) -> str:
        """Write the photo with fsync before rename; returns its name relative to the root."""
        folder = self.root / str(gallery)
        folder.mkdir(exist_ok=True)
        name = f"{gallery}/{secrets.token_hex(12)}.{EXTENSIONS[content_type]}"
        final = self.root / name
        tmp = final.with_name(f".{final.name}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / name).unlink()

    def remove_orphans(self, live: set[str]) -> int:
        """Delete files no image record points to: left by a crash between file and commit."""
        removed = 0
        for path in self.root.glob("*/*"):
            name = path.relative_to(self.root).as_posix()
            if name not in live:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("removed %d orphan photo files", removed)
        return removed
