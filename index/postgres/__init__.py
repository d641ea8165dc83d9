"""The cluster catalog: every table in PostgreSQL, reached through a connection pool.

Any number of processes on any number of machines open the same catalog; each method is
one transaction, so what a caller was told is stored survives a crash of any of them or
of the server, and what it was not told is absent as a whole. The schema is created and
migrated by whoever opens it first (``schema``). It is an ``index.catalog.OutboxCatalog``:
it also keeps how far the vector backend applied the change log, and the advisory locks
that hold a gallery (``outbox``). Beyond the protocols it copies a deployment in
(``importer``, for scripts/migrate.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from .backup import backup_database
from .changes import PostgresChangeLog
from .database import Database, one
from .images import PostgresImages
from .importer import Importer
from .job_records import PostgresJobRecords
from .jobs import Jobs
from .keys import PostgresKeys
from .outbox import Outbox
from .persons import PostgresGrouping, PostgresPersonEdits, PostgresPersons
from .schema import migrate
from .secrets import PostgresSecrets
from .staging import PostgresStaging
from .values import PostgresMetadataIndex


class PostgresCatalog:
    """``index.catalog.OutboxCatalog`` over PostgreSQL; one per process, shared by its threads."""

    component = "postgres"

    def __init__(self, url: str, max_connections: int = 8) -> None:
        self.url = url
        self.db = Database(url, max_connections)
        migrate(self.db)
        self.keys = PostgresKeys(self.db)
        self.images = PostgresImages(self.db)
        self.metadata = PostgresMetadataIndex(self.db)
        self.log = PostgresChangeLog(self.db)
        self.staging = PostgresStaging(self.db)
        self.secrets = PostgresSecrets(self.db)
        self.outbox = Outbox(self.db)
        self.jobs = Jobs(self.db)
        self.persons = PostgresPersons(self.db)
        self.person_edits = PostgresPersonEdits(self.db)
        self.grouping = PostgresGrouping(self.db)
        self.job_records = PostgresJobRecords(self.db)
        self.importer = Importer(self.db)
        with self.db.transaction() as cursor:
            (self.namespace,) = one(cursor.execute("SELECT value FROM catalog_meta WHERE name = 'namespace'"))

    def ping(self) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("SELECT 1")

    def backup(self, dest: Path) -> set[str]:
        return backup_database(self.db, dest)

    def opener(self) -> Callable[[], PostgresCatalog]:
        return functools.partial(PostgresCatalog, self.url)

    def close(self) -> None:
        self.db.close()
