"""Backups of the embedded catalog: LMDB's own copy of the environment, and its restore."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import CatalogNotEmptyError
from .encoding import decode_image
from .environment import Environment

DATA_FILE = "data.mdb"  # what an LMDB environment's folder holds


def backup_environment(env: Environment, dest: Path) -> set[str]:
    """LMDB copies the environment as one read transaction sees it, compacted: what was
    committed when the copy began, whatever is written while it runs."""
    with env.reading() as txn:
        names = {decode_image(raw).file for _, raw in txn.cursor(db=env.db["images"])}
        env.env.copy(str(dest), compact=True, txn=txn)
    return names


def restore(src: Path, lmdb_dir: Path, index_dir: Path) -> None:
    """The copy in ``src`` as the catalog of ``lmdb_dir``. Refused when a catalog is there, or
    index files (derived from another catalog, they would not match this one)."""
    if not (src / DATA_FILE).is_file():
        raise ValueError(f"{src} holds no LMDB catalog ({DATA_FILE} is missing)")
    for folder in (lmdb_dir, index_dir):
        if folder.exists() and any(folder.iterdir()):
            raise CatalogNotEmptyError(f"{folder} is not empty")
    shutil.copytree(src, lmdb_dir, dirs_exist_ok=True)
