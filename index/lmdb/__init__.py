"""The embedded catalog: every table in one LMDB environment under the data directory."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from .attributes import Attributes, LmdbMetadataIndex
from .backup import backup_environment
from .changes import LmdbChangeLog
from .environment import Environment
from .images import LmdbImages
from .job_records import LmdbJobRecords
from .jobs import LocalJobs
from .keys import LmdbKeys
from .persons import LmdbGrouping, LmdbPersonEdits, LmdbPersons
from .secrets import LmdbSecrets
from .staging import LmdbStaging


class LmdbCatalog:
    """``index.catalog.Catalog`` over LMDB. LMDB allows one handle per file per process:
    open one of these per process and share it between threads."""

    component = "lmdb"

    def __init__(self, path: Path, map_size: int = 1 << 30) -> None:
        self.env = Environment(path, map_size)
        attributes = Attributes(self.env)
        self.keys = LmdbKeys(self.env, attributes)
        self.images = LmdbImages(self.env, attributes)
        self.metadata = LmdbMetadataIndex(self.env, attributes)
        self.log = LmdbChangeLog(self.env)
        self.staging = LmdbStaging(self.env, self.images, self.log, attributes)
        self.jobs = LocalJobs()
        self.persons = LmdbPersons(self.env)
        self.person_edits = LmdbPersonEdits(self.env)
        self.grouping = LmdbGrouping(self.env)
        self.job_records = LmdbJobRecords(self.env)
        self.secrets = LmdbSecrets(self.env)

    def ping(self) -> None:
        self.env.read(lambda txn: txn.id())

    def backup(self, dest: Path) -> set[str]:
        return backup_environment(self.env, dest)

    def opener(self) -> Callable[[], LmdbCatalog]:
        return functools.partial(LmdbCatalog, self.env.path, self.env.map_size)

    def close(self) -> None:
        self.env.close()
