"""Backups of a data directory taken while the server keeps serving and writing, and restores.

A backup is the catalog, copied as one transaction sees it (compacted), and the photos its
images name. Every photo there is is pinned (hard-linked aside) before the copy begins, so
each image acknowledged before the backup started is in it with its photo, even if it is
deleted meanwhile; an image added during the backup whose photo is gone by the time it is
copied is left out of the backup's catalog, so a backup never names a missing photo. The
vector indexes are not backed up: a server started on a restored directory builds them
from the catalog.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from index.backend import StorageSettings, open_catalog

from .config import Settings
from .errors import InvalidRequest, writing
from .keys import now
from .photos import THUMBNAIL_SUFFIX, PhotoFiles

MANIFEST = "backup.json"
FORMAT = 1
CLUSTER = (
    "this copies an embedded data directory; in cluster mode back up PostgreSQL with its own tools "
    "(pg_dump --format=custom of FACE_SEARCH_CATALOG_URL) and the photo folder, as docs/operations.md "
    "(Cluster mode: backup and restore) describes"
)


@dataclass
class BackupSummary:
    images: int = 0
    photos: int = 0
    dropped: int = 0  # images added during the backup whose photo was deleted before it was copied
    seconds: float = 0.0


def _embedded(settings: Settings) -> None:
    """A cluster's catalog is a database server's: its own tools back it up (CLUSTER)."""
    if settings.storage.cluster:
        raise InvalidRequest(CLUSTER)


def _empty(folder: Path, what: str) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise InvalidRequest(f"{what} {folder} is not empty")


def backup(settings: Settings, dest: Path) -> BackupSummary:
    """Copy the catalog and its photos into the new or empty folder ``dest``."""
    started = time.monotonic()
    _embedded(settings)
    _empty(dest, "the backup folder")
    photos = PhotoFiles(settings.photos_dir)
    pinned = settings.storage.data_dir / "run" / f"backup-{os.getpid()}"  # beside the photos: links work
    catalog = open_catalog(settings.storage)
    try:
        with writing():
            photos.pin(pinned)
            (dest / "lmdb").mkdir(parents=True)
            names = catalog.backup(dest / "lmdb")
            copied, missing = _copy_photos(names, [pinned, settings.photos_dir], dest / "photos")
    finally:
        catalog.close()
        shutil.rmtree(pinned, ignore_errors=True)
    summary = BackupSummary(photos=copied, dropped=_drop_images_of(dest, missing))
    summary.images = len(names) - summary.dropped
    summary.seconds = round(time.monotonic() - started, 1)
    (dest / MANIFEST).write_text(json.dumps({"format": FORMAT, "taken_at": now(), **asdict(summary)}, indent=1))
    os.sync()
    return summary


def _copy_photos(names: set[str], sources: list[Path], into: Path) -> tuple[int, set[str]]:
    """Each named photo from the first source holding it, with its thumbnail where one was
    made (else it is made again on its first request); the names none holds."""
    copied, missing = 0, set()
    for name in sorted(names):
        source = next((folder for folder in sources if (folder / name).is_file()), None)
        if source is None:
            missing.add(name)
            continue
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, into / name)
        copied += 1
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(source / (name + THUMBNAIL_SUFFIX), into / (name + THUMBNAIL_SUFFIX))
    return copied, missing


def _drop_images_of(dest: Path, missing: set[str]) -> int:
    """Delete from the backup's catalog the images whose photo could not be copied."""
    if not missing:
        return 0
    catalog = open_catalog(StorageSettings(data_dir=dest))
    dropped = 0
    try:
        for gid, gallery in catalog.images.galleries().items():
            records = catalog.images.page(gid, 0, max(gallery.images, 1))[0]
            dropped += len(catalog.images.delete(gid, [r.id for r in records if r.file in missing]))
    finally:
        catalog.close()
    return dropped


def restore(src: Path, settings: Settings) -> BackupSummary:
    """Bring the backup in ``src`` back into the empty data directory of ``settings``."""
    _embedded(settings)
    manifest = src / MANIFEST
    if not manifest.is_file():
        raise InvalidRequest(f"{src} holds no backup ({MANIFEST} is missing)")
    recorded = json.loads(manifest.read_text())
    if recorded.get("format") != FORMAT:
        raise InvalidRequest(f"{src} is a backup of format {recorded.get('format')}; this service reads {FORMAT}")
    data_dir = settings.storage.data_dir
    _empty(data_dir, "the data directory")
    with writing():
        shutil.copytree(src / "lmdb", settings.storage.lmdb_dir)
        shutil.copytree(src / "photos", settings.photos_dir, dirs_exist_ok=True)
        os.sync()
    return BackupSummary(recorded["images"], recorded["photos"], recorded["dropped"], recorded["seconds"])
