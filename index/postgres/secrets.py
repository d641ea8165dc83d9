"""The service's secrets, in ``catalog_meta`` beside the catalog's namespace (hex text)."""

from __future__ import annotations

from .database import Database, one

_PREFIX = "secret:"


class PostgresSecrets:
    def __init__(self, database: Database) -> None:
        self.db = database

    def get(self, name: str) -> bytes | None:
        with self.db.transaction() as cursor:
            found = cursor.execute("SELECT value FROM catalog_meta WHERE name = %s", (_PREFIX + name,)).fetchone()
        return bytes.fromhex(found[0]) if found else None

    def setdefault(self, name: str, value: bytes) -> bytes:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO catalog_meta VALUES (%s, %s) ON CONFLICT (name) DO NOTHING", (_PREFIX + name, value.hex())
            )
            (stored,) = one(cursor.execute("SELECT value FROM catalog_meta WHERE name = %s", (_PREFIX + name,)))
        return bytes.fromhex(stored)

    def replace(self, name: str, value: bytes) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO catalog_meta VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_PREFIX + name, value.hex()),
            )
