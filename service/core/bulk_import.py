"""Bulk import of a folder tree of photos through the same steps as ``POST /images``.

Each photo is remembered by the SHA-256 of its bytes, in the same catalog transaction as
its image record, so an import stopped at any point (Ctrl-C, SIGKILL, power cut) can be
run again: what was stored is skipped, nothing is stored twice, nothing is lost.

The folder's batches are a bulk job of the catalog (``index.catalog.BulkJobs``): where the
catalog is shared by several machines (cluster mode) the same command can run on each of
them at once, every worker claiming the next free batch with a lease, so every machine
added adds throughput, and a batch whose worker was killed is claimed by another once its
lease runs out. An embedded catalog gives every batch to the one process that runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.catalog import BulkJobs, Catalog
from index.records import KeyRecord

from .config import Limits
from .errors import writing
from .images import FaceReader, Gallery
from .metadata import checked_metadata

LEASE_SECONDS = 300.0  # a claimed batch is another worker's to take after this long (a batch takes seconds)
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


def path_metadata(root: Path, path: Path) -> dict[str, Any]:
    """``{"path": "alice/1.jpg", "folder": "alice"}``: where a photo came from, so a search hit
    can be traced back (in a folder per person, ``folder`` is the person)."""
    relative = path.relative_to(root)
    metadata = {"path": relative.as_posix()}
    if relative.parent != Path("."):
        metadata["folder"] = relative.parent.name
    return metadata


def claimed_batches(jobs: BulkJobs, job: str, lease_seconds: float) -> Iterator[list[Any]]:
    """The items of each batch of ``job`` this worker claims, until every batch is done by
    some worker; a batch is marked done when the loop asks for the next one."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    while True:
        with writing():
            claimed = jobs.claim(job, worker, lease_seconds)
        if claimed is None:
            with writing():
                left, _ = jobs.remaining(job)
            if not left:
                return
            time.sleep(min(5.0, lease_seconds / 4))  # batches leased by others: done by them or freed
            continue
        yield claimed.items
        with writing():
            jobs.finish(claimed, worker)


class BulkImport:
    """A folder of photos into a key's gallery, as ``POST /images`` adds one."""

    def __init__(self, catalog: Catalog, reader: FaceReader, gallery: Gallery, limits: Limits) -> None:
        self.catalog, self.reader, self.gallery, self.limits = catalog, reader, gallery, limits

    def run(
        self,
        key: KeyRecord,
        root: Path,
        metadata_from_path: bool = False,
        batch: int = 16,
        advance: Callable[[int], object] = lambda n: None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> ImportSummary:
        """Add every photo under ``root`` to the key's gallery; ``advance(n)`` after n files.

        This worker imports the batches it claims, beside any other worker on the same job, and
        returns once every batch of the job is done (by whichever worker)."""
        summary = ImportSummary()
        seen: set[bytes] = set()
        jobs = self.catalog.jobs
        names = [path.relative_to(root).as_posix() for path in photo_files(root)]
        job = f"import:{key.gallery}:{hashlib.sha256(json.dumps(names).encode()).hexdigest()[:16]}"
        with writing():
            jobs.plan(job, [names[start : start + batch] for start in range(0, len(names), batch)])
        for claimed in claimed_batches(jobs, job, lease_seconds):
            paths = [root / name for name in claimed]
            self._import_batch(key, root, paths, metadata_from_path, seen, summary)
            advance(len(paths))
        return summary

    def _import_batch(
        self,
        key: KeyRecord,
        root: Path,
        paths: list[Path],
        metadata_from_path: bool,
        seen: set[bytes],
        summary: ImportSummary,
    ) -> None:
        """Detect, embed (one model call for the batch) and store the batch's photos not stored yet."""
        photos = []
        for path in paths:
            photo = self._read(key, path, seen, summary)
            if photo is not None:
                photos.append(photo)
        pack = self.reader.pack_for(self.catalog.images.gallery(key.gallery).pack)
        found = self.reader.faces_in_many([p.data for p in photos], pack.name)
        for photo, faces in zip(photos, found, strict=True):
            if faces is None:
                summary.unreadable.append(str(photo.path))
                continue
            if not faces:
                with writing():
                    self.catalog.images.mark_imported(key.gallery, photo.digest)
                summary.no_face += 1
                continue
            metadata = path_metadata(root, photo.path) if metadata_from_path else {}
            metadata = checked_metadata(metadata, self.limits)
            self.gallery.store(key, photo.data, metadata, faces, pack, source_digest=photo.digest)
            summary.added += 1
            summary.faces += len(faces)

    def _read(self, key: KeyRecord, path: Path, seen: set[bytes], summary: ImportSummary) -> _Photo | None:
        """The photo's bytes, or None (counted) when it cannot be read or was imported before."""
        try:
            data = path.read_bytes()
        except OSError:
            summary.unreadable.append(str(path))
            return None
        digest = hashlib.sha256(data).digest()
        images = self.catalog.images
        done = images.imported_as(key.gallery, digest)
        if digest in seen or done == 0 or (done and images.get(key.gallery, done) is not None):
            summary.already += 1
            return None
        seen.add(digest)
        return _Photo(path, data, digest)
