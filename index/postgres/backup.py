"""Backups of the cluster catalog: every table a snapshot sees, copied out as PostgreSQL's own
COPY text (portable across servers and versions), and its restore into an empty database.

One repeatable-read transaction reads every table, so the copy is the catalog as it was at
one instant while replicas keep writing. Left out: what the vector backend derives from the
catalog (how far each collection applied the outbox: a restored catalog's vectors are
rebuilt from it), the bulk jobs' leases and the jobs' records (transient), and the catalog's
namespace, so a restored catalog names vector collections of its own and never touches the
old deployment's. A backup of an older schema restores into the current one.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from ..errors import CatalogNotEmptyError
from .database import Database, one
from .schema import ADDED_COLUMNS, FILLS, ID_SEQUENCES, advance_sequences, migrate

TABLES = (
    "galleries", "keys", "images", "faces", "changes", "imported", "staged", "staged_images", "image_values",
    "filter_keys", "persons", "face_persons", "person_state",
)  # fmt: skip
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
        if recorded["schema"] > schema:
            raise ValueError(
                f"{src} is a catalog of schema version {recorded['schema']}, newer than this service's ({schema}): "
                "restore it with the newer service"
            )
        later = range(recorded["schema"] + 1, schema + 1)  # what an older backup lacks
        with db.transaction(long=True) as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")  # no replica writes meanwhile
            if one(cursor.execute("SELECT EXISTS (SELECT 1 FROM galleries) OR EXISTS (SELECT 1 FROM keys)"))[0]:
                raise CatalogNotEmptyError("the PostgreSQL catalog holds keys or galleries already")
            for table in recorded["tables"]:
                missing = {column for v in later for column in ADDED_COLUMNS.get(v, {}).get(table, ())}
                columns = [c for c in _columns(cursor, table) if c not in missing]
                statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                with (src / f"{table}.copy").open("rb") as data, cursor.copy(statement) as copy:
                    while chunk := data.read(CHUNK):
                        copy.write(chunk)
            for version in later:
                if version in FILLS:
                    cursor.execute(FILLS[version])
            advance_sequences(cursor, recorded["sequences"])
    finally:
        db.close()


def _columns(cursor: psycopg.Cursor, table: str) -> list[str]:
    """The table's columns in their order (COPY's order)."""
    found = cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [name for (name,) in found]
