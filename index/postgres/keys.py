"""API keys and their request counts in PostgreSQL: a quota is counted by one atomic
UPDATE, so every replica counts against the same number."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from ..errors import KeyExistsError
from ..records import KeyRecord
from . import rows
from .database import Database, one


class PostgresKeys:
    def __init__(self, database: Database) -> None:
        self.db = database

    def get(self, name: str) -> KeyRecord | None:
        with self.db.transaction() as cursor:
            found = cursor.execute(f"SELECT {rows.KEY} FROM keys WHERE name = %s", (name,)).fetchone()
        return rows.key(found) if found else None

    def create(self, name: str, secret_hash: str, quota: int | None, created_at: str) -> KeyRecord:
        try:
            with self.db.transaction() as cursor:
                (gallery,) = one(cursor.execute("INSERT INTO galleries (key) VALUES (%s) RETURNING id", (name,)))
                cursor.execute(
                    "INSERT INTO keys (name, gallery, secret_hash, quota, created_at) VALUES (%s, %s, %s, %s, %s)",
                    (name, gallery, secret_hash, quota, created_at),
                )
        except psycopg.errors.UniqueViolation:
            raise KeyExistsError(name) from None
        return KeyRecord(name, gallery, secret_hash, quota, False, created_at)

    def update(self, name: str, change: Callable[[KeyRecord], None]) -> KeyRecord | None:
        with self.db.transaction() as cursor:
            found = cursor.execute(f"SELECT {rows.KEY} FROM keys WHERE name = %s FOR UPDATE", (name,)).fetchone()
            if found is None:
                return None
            record = rows.key(found)
            change(record)
            cursor.execute(
                "UPDATE keys SET secret_hash = %s, quota = %s, revoked = %s WHERE name = %s",
                (record.secret_hash, record.quota, record.revoked, name),
            )
        return record

    def all(self) -> list[tuple[KeyRecord, int]]:
        with self.db.transaction() as cursor:
            found = cursor.execute(f"SELECT {rows.KEY}, used FROM keys ORDER BY name").fetchall()
        return [(rows.key(row[:-1]), row[-1]) for row in found]

    def count_request(self, name: str, quota: int | None) -> bool:
        with self.db.transaction() as cursor:
            counted = cursor.execute(
                "UPDATE keys SET used = used + 1 WHERE name = %s AND (%s::bigint IS NULL OR used < %s) RETURNING used",
                (name, quota, quota),
            ).fetchone()
        return counted is not None

    def reset_usage(self, name: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE keys SET used = 0 WHERE name = %s", (name,))
