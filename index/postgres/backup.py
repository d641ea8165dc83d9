"""Backups of the cluster catalog: every table a snapshot sees, copied out as PostgreSQL's own
COPY text (portable across servers and versions), and its restore into an empty database.

One repeatable-read transaction reads every table, so the copy is the catalog as it was at
one instant while replicas keep writing. Left out: what the vector backend derives from the
catalog (how far each collection applied the outbox: a restored catalog's vectors are
rebuilt from it), the bulk jobs' leases, and the catalog's namespace, so a restored catalog
names vector collections of its own and never touches the old deployment's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CatalogNotEmptyError
from .database import Database, one
from .schema import ID_SEQUENCES, advance_sequences, migrate

TABLES = ("galleries", "keys", "images", "faces", "changes", "imported", "staged", "staged_images")
MANIFEST = "catalog.json"
CHUNK = 1 << 20


def backup_database(db: Database, dest: Path) -> set[str]:
    with db.transaction(long=True, snapshot=True) as cursor:
        names = {file for (file,) in cursor.execute("SELECT file FROM images")}  # the snapshot starts here
        for table in TABLES:
            with (dest / f"{table}.copy").open("wb") as out, cursor.copy(f"COPY {table} TO STDOUT") as copy:
                for data in copy:
                    out.write(data)
        # read after the snapshot began, so at least as far as any id it holds (ids are never reused)
        sequences = {name: one(cursor.execute(f"SELECT last_value FROM {name}"))[0] for name in ID_SEQUENCES}
        (schema,) = one(cursor.execute("SELECT max(version) FROM schema_version"))
    (dest / MANIFEST).write_text(json.dumps({"schema": schema, "sequences": sequences, "tables": TABLES}))
    return names


def restore(url: str, src: Path) -> None:
    """The copy in ``src`` as the catalog at ``url``, whose schema is created if need be; in one
    transaction, so a restore stopped half-way leaves the database as empty as it was."""
    manifest = src / MANIFEST
    if not manifest.is_file():
        raise ValueError(f"{src} holds no PostgreSQL catalog ({MANIFEST} is missing)")
    recorded = json.loads(manifest.read_text())
    db = Database(url)
    try:
        schema = migrate(db)
        if recorded["schema"] != schema:
            raise ValueError(f"{src} is a catalog of schema version {recorded['schema']}; this service's is {schema}")
        with db.transaction(long=True) as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")  # no replica writes meanwhile
            if one(cursor.execute("SELECT EXISTS (SELECT 1 FROM galleries) OR EXISTS (SELECT 1 FROM keys)"))[0]:
                raise CatalogNotEmptyError("the PostgreSQL catalog holds keys or galleries already")
            for table in recorded["tables"]:
                with (src / f"{table}.copy").open("rb") as data, cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    while chunk := data.read(CHUNK):
                        copy.write(chunk)
            advance_sequences(cursor, recorded["sequences"])
    finally:
        db.close()
