"""The embedded catalog: every table in one LMDB environment under the data directory."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from .changes import LmdbChangeLog
from .encoding import decode_image
from .environment import Environment
from .images import LmdbImages
from .keys import LmdbKeys
from .secrets import LmdbSecrets
from .staging import LmdbStaging


class LmdbCatalog:
    """``index.catalog.Catalog`` over LMDB. LMDB allows one handle per file per process:
    open one of these per process and share it between threads."""

    def __init__(self, path: Path, map_size: int = 1 << 30) -> None:
        self.env = Environment(path, map_size)
        self.keys = LmdbKeys(self.env)
        self.images = LmdbImages(self.env)
        self.log = LmdbChangeLog(self.env)
        self.staging = LmdbStaging(self.env, self.images, self.log)
        self.secrets = LmdbSecrets(self.env)

    def ping(self) -> None:
        self.env.read(lambda txn: txn.id())

    def backup(self, dest: Path) -> set[str]:
        """LMDB copies the environment as one read transaction sees it: what was committed when
        the copy began, whatever is written while it runs."""
        with self.env.reading() as txn:
            names = {decode_image(raw).file for _, raw in txn.cursor(db=self.env.db["images"])}
            self.env.env.copy(str(dest), compact=True, txn=txn)
        return names

    def opener(self) -> Callable[[], LmdbCatalog]:
        return functools.partial(LmdbCatalog, self.env.path, self.env.map_size)

    def close(self) -> None:
        self.env.close()
