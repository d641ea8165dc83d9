"""Backups taken while the service keeps serving and writing, and restores.

A backup is the catalog, copied as one transaction sees it (``Catalog.backup``: LMDB's copy
of its environment, or PostgreSQL's tables), and the photos its images name. Every photo
there is is pinned (hard-linked aside) before the catalog is copied, so each image
acknowledged before the backup started is in it with its photo, even if it is deleted
meanwhile. An image added during the backup whose photo is gone by the time it is copied
is named in the manifest and left out by the restore, so a restore never brings back an
image without its photo. The vector indexes are not backed up: they are derived from the
catalog, and the restore builds them from it (FAISS files, or the Milvus collections of
the restored catalog, which are its own and never the old deployment's).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from index.backend import open_backend, open_catalog, restore_catalog
from index.catalog import Catalog
from index.errors import CatalogNotEmptyError

from .config import Settings
from .errors import InvalidRequest, writing
from .keys import now
from .maintenance import Maintenance
from .photos import THUMBNAIL_SUFFIX, PhotoFiles

log = logging.getLogger(__name__)

MANIFEST = "backup.json"
FORMAT = 2
CATALOG = {1: "lmdb", 2: "catalog"}  # the catalog's folder in a backup of each format (1: embedded only)


@dataclass
class BackupSummary:
    images: int = 0
    photos: int = 0
    dropped: int = 0  # images added during the backup whose photo was deleted before it was copied
    seconds: float = 0.0


def _empty(folder: Path, what: str) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise InvalidRequest(f"{what} {folder} is not empty")


def backup(settings: Settings, dest: Path) -> BackupSummary:
    """Copy the catalog and its photos into the new or empty folder ``dest``."""
    started = time.monotonic()
    _empty(dest, "the backup folder")
    photos = PhotoFiles(settings.photos_dir)
    pinned = settings.storage.data_dir / "run" / f"backup-{os.getpid()}"  # a link where it can, else a copy
    catalog = open_catalog(settings.storage)
    try:
        with writing():
            photos.pin(pinned)
            (dest / CATALOG[FORMAT]).mkdir(parents=True)
            (dest / "photos").mkdir()
            names = catalog.backup(dest / CATALOG[FORMAT])
            copied, missing = _copy_photos(names, [pinned, settings.photos_dir], dest / "photos")
    finally:
        catalog.close()
        shutil.rmtree(pinned, ignore_errors=True)
    summary = BackupSummary(images=len(names) - len(missing), photos=copied, dropped=len(missing))
    summary.seconds = round(time.monotonic() - started, 1)
    manifest = {"format": FORMAT, "taken_at": now(), **asdict(summary), "missing": sorted(missing)}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1))
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


def _drop_images_of(catalog: Catalog, missing: set[str]) -> int:
    """Delete the images whose photo the backup could not copy."""
    dropped = 0
    for gid, gallery in catalog.images.galleries().items() if missing else ():
        records = catalog.images.page(gid, 0, max(gallery.images, 1))[0]
        dropped += len(catalog.images.delete(gid, [r.id for r in records if r.file in missing]))
    return dropped


def restore(src: Path, settings: Settings) -> BackupSummary:
    """Bring the backup in ``src`` back into the empty catalog and photo folder of ``settings``,
    then build the vector index of every gallery from the restored catalog."""
    manifest = src / MANIFEST
    if not manifest.is_file():
        raise InvalidRequest(f"{src} holds no backup ({MANIFEST} is missing)")
    recorded = json.loads(manifest.read_text())
    if recorded.get("format") not in CATALOG:
        raise InvalidRequest(f"{src} is a backup of format {recorded.get('format')}; this service reads {FORMAT}")
    _empty(settings.photos_dir, "the photo folder")
    try:
        with writing():
            restore_catalog(settings.storage, src / CATALOG[recorded["format"]])
    except CatalogNotEmptyError as exc:
        raise InvalidRequest(f"{exc}: a backup is restored into an empty catalog only") from exc
    except ValueError as exc:  # a backup of another kind of catalog
        raise InvalidRequest(str(exc)) from exc
    with writing():
        shutil.copytree(src / "photos", settings.photos_dir, dirs_exist_ok=True)
    catalog, indexes = open_backend(settings.storage, settings.indexing)
    try:
        with writing():
            _drop_images_of(catalog, set(recorded.get("missing", [])))
        Maintenance(catalog, indexes).rebuild_indexes(None, if_needed=True, wait=True, progress=log.info)
    finally:
        indexes.close()
        catalog.close()
    os.sync()
    return BackupSummary(recorded["images"], recorded["photos"], recorded["dropped"], recorded["seconds"])
