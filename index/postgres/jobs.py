"""Bulk jobs split into batches that workers on any machine claim with a lease.

A worker claims the next free batch with ``FOR UPDATE SKIP LOCKED`` (so claims never wait
on each other) and holds it until ``claimed_until``; a worker killed mid-batch simply lets
its lease run out, and the batch goes to whoever claims next. A batch's work is itself
idempotent (an import skips photos already stored), so a batch done twice costs time only.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Json

from ..records import JobBatch
from .database import Database, one


class Jobs:
    """``index.catalog.BulkJobs`` shared by every worker on every machine."""

    shared = True

    def __init__(self, database: Database) -> None:
        self.db = database

    def plan(self, job: str, batches: list[list[Any]]) -> int:
        """Create the job's batches unless it exists (a second worker joins it); its batch count."""
        with self.db.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (job,))
            (count,) = one(cursor.execute("SELECT count(*) FROM job_batches WHERE job = %s", (job,)))
            if count:
                return count
            cursor.executemany(
                "INSERT INTO job_batches (job, batch, items) VALUES (%s, %s, %s)",
                [(job, number, Json(items)) for number, items in enumerate(batches)],
            )
        return len(batches)

    def claim(self, job: str, worker: str, lease_seconds: float) -> JobBatch | None:
        """The next batch nobody holds (or whose holder's lease ran out), now leased to ``worker``."""
        with self.db.transaction() as cursor:
            found = cursor.execute(
                "SELECT batch, items FROM job_batches WHERE job = %s AND NOT done "
                "AND (claimed_until IS NULL OR claimed_until < now()) ORDER BY batch LIMIT 1 FOR UPDATE SKIP LOCKED",
                (job,),
            ).fetchone()
            if found is None:
                return None
            cursor.execute(
                "UPDATE job_batches SET claimed_by = %s, claimed_until = now() + make_interval(secs => %s) "
                "WHERE job = %s AND batch = %s",
                (worker, lease_seconds, job, found[0]),
            )
        return JobBatch(job, found[0], found[1])

    def finish(self, batch: JobBatch, worker: str) -> bool:
        """Mark the batch done; False when the lease was lost to another worker meanwhile."""
        with self.db.transaction() as cursor:
            done = cursor.execute(
                "UPDATE job_batches SET done = true, claimed_until = NULL WHERE job = %s AND batch = %s "
                "AND claimed_by = %s RETURNING batch",
                (batch.job, batch.number, worker),
            ).fetchone()
        return done is not None

    def remaining(self, job: str) -> tuple[int, int]:
        """(batches not done, batches in all)."""
        with self.db.transaction() as cursor:
            left, total = one(
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE NOT done), count(*) FROM job_batches WHERE job = %s", (job,)
                )
            )
        return left, total
