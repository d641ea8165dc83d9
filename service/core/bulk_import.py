"""Bulk import of a folder tree of photos through the same steps as ``POST /images``.

Each photo is remembered by the SHA-256 of its bytes, in the same LMDB transaction as
its image record, so an import stopped at any point (Ctrl-C, SIGKILL, power cut) can be
run again: what was stored is skipped, nothing is stored twice, nothing is lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from index.records import KeyRecord

from .errors import writing
from .images import add_faces
from .metadata import checked_metadata
from .services import Services

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


@dataclass
class ImportSummary:
    added: int = 0  # photos stored
    faces: int = 0  # faces in them
    no_face: int = 0
    unreadable: list[str] = field(default_factory=list)
    already: int = 0  # imported by an earlier run (or twice in this folder)

    def line(self) -> str:
        return (
            f"added {self.added} photos ({self.faces} faces), no face {self.no_face}, "
            f"unreadable {len(self.unreadable)}, already imported {self.already}"
        )


@dataclass
class _Photo:
    path: Path
    data: bytes
    digest: bytes


def photo_files(root: Path) -> list[Path]:
    """Files with a photo extension under ``root``, in a stable order, hidden ones skipped."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def path_metadata(root: Path, path: Path) -> dict:
    """``{"path": "alice/1.jpg", "folder": "alice"}``: where a photo came from, so a search hit
    can be traced back (in a folder per person, ``folder`` is the person)."""
    relative = path.relative_to(root)
    metadata = {"path": relative.as_posix()}
    if relative.parent != Path("."):
        metadata["folder"] = relative.parent.name
    return metadata


def _batches(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def import_folder(
    services: Services,
    key: KeyRecord,
    root: Path,
    metadata_from_path: bool = False,
    batch: int = 16,
    advance: Callable[[int], object] = lambda n: None,
) -> ImportSummary:
    """Add every photo under ``root`` to the key's gallery; ``advance(n)`` after n files."""
    summary = ImportSummary()
    seen: set[bytes] = set()
    for paths in _batches(photo_files(root), batch):
        photos = []
        for path in paths:
            photo = _read(services, key, path, seen, summary)
            if photo is not None:
                photos.append(photo)
        for photo, faces in zip(photos, services.analyzer.faces_in_many([p.data for p in photos]), strict=True):
            if faces is None:
                summary.unreadable.append(str(photo.path))
                continue
            if not faces:
                with writing():
                    services.catalog.images.mark_imported(key.gallery, photo.digest)
                summary.no_face += 1
                continue
            metadata = path_metadata(root, photo.path) if metadata_from_path else {}
            metadata = checked_metadata(metadata, services.settings.limits)
            add_faces(services, key, photo.data, metadata, faces, source_digest=photo.digest)
            summary.added += 1
            summary.faces += len(faces)
        advance(len(paths))
    return summary


def _read(services: Services, key: KeyRecord, path: Path, seen: set[bytes], summary: ImportSummary) -> _Photo | None:
    """The photo's bytes, or None (counted) when it cannot be read or was imported before."""
    try:
        data = path.read_bytes()
    except OSError:
        summary.unreadable.append(str(path))
        return None
    digest = hashlib.sha256(data).digest()
    images = services.catalog.images
    done = images.imported_as(key.gallery, digest)
    if digest in seen or done == 0 or (done and images.get(key.gallery, done) is not None):
        summary.already += 1
        return None
    seen.add(digest)
    return _Photo(path, data, digest)
