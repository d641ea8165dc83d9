"""Jobs in PostgreSQL: every replica sees the same record, and a lease on the database
server's clock says which worker of which replica runs it."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Json

from ..records import DONE, FAILED, QUEUED, RUNNING, JobRecord
from .database import Database, one

JOB = "id, gallery, kind, state, params, done, total, error, worker, lease_until, created_at, updated_at"
NOW = "extract(epoch FROM clock_timestamp())"
KEEP_ENDED_SECONDS = 86_400.0  # an ended job can be read this long, then it is dropped


class PostgresJobRecords:
    """``index.catalog.JobRecords``."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def submit(self, gid: int, kind: str, params: dict[str, Any], created_at: str) -> JobRecord:
        with self.db.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('job:' || %s || ':' || %s))", (gid, kind))
            cursor.execute(f"DELETE FROM jobs WHERE state IN (%s, %s) AND lease_until < {NOW} - %s",
                           (DONE, FAILED, KEEP_ENDED_SECONDS))  # fmt: skip
            found = cursor.execute(
                f"SELECT {JOB} FROM jobs WHERE gallery = %s AND kind = %s AND state IN (%s, %s) ORDER BY id LIMIT 1",
                (gid, kind, QUEUED, RUNNING),
            ).fetchone()
            if found is None:
                found = one(
                    cursor.execute(
                        "INSERT INTO jobs (gallery, kind, state, params, created_at, updated_at) "
                        f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {JOB}",
                        (gid, kind, QUEUED, Json(params), created_at, created_at),
                    )
                )
        return JobRecord(*found)

    def get(self, job_id: int) -> JobRecord | None:
        with self.db.transaction() as cursor:
            found = cursor.execute(f"SELECT {JOB} FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return JobRecord(*found) if found else None

    def claim(self, job_id: int, worker: str, lease_seconds: float) -> JobRecord | None:
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"UPDATE jobs SET state = %s, worker = %s, lease_until = {NOW} + %s, updated_at = now()::text "
                f"WHERE id = %s AND (state = %s OR (state = %s AND lease_until < {NOW})) RETURNING {JOB}",
                (RUNNING, worker, lease_seconds, job_id, QUEUED, RUNNING),
            ).fetchone()
        return JobRecord(*found) if found else None

    def report(self, job_id: int, worker: str, done: int, total: int, lease_seconds: float) -> bool:
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"UPDATE jobs SET done = %s, total = %s, lease_until = {NOW} + %s, updated_at = now()::text "
                "WHERE id = %s AND state = %s AND worker = %s RETURNING id",
                (done, total, lease_seconds, job_id, RUNNING, worker),
            ).fetchone()
        return found is not None

    def end(self, job_id: int, worker: str, state: str, error: str | None) -> bool:
        if state not in (DONE, FAILED):
            return False
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"UPDATE jobs SET state = %s, error = %s, lease_until = {NOW}, updated_at = now()::text "
                "WHERE id = %s AND state = %s AND worker = %s RETURNING id",
                (state, error, job_id, RUNNING, worker),
            ).fetchone()
        return found is not None

    def claimable(self) -> list[JobRecord]:
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"SELECT {JOB} FROM jobs WHERE state = %s OR (state = %s AND lease_until < {NOW}) ORDER BY id",
                (QUEUED, RUNNING),
            ).fetchall()
        return [JobRecord(*row) for row in found]
