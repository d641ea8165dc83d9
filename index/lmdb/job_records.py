"""Jobs of an embedded catalog: records in LMDB, so every worker process of the machine sees
the same job, and a lease (a time on this machine's clock) says which of them runs it."""

from __future__ import annotations

import time
from typing import Any

import lmdb

from ..records import DONE, FAILED, QUEUED, RUNNING, JobRecord
from .encoding import decode_job, encode, u64
from .environment import Environment

KEEP_ENDED_SECONDS = 86_400.0  # an ended job can be read this long, then it is dropped


class LmdbJobRecords:
    """``index.catalog.JobRecords``."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    def _all(self, txn: lmdb.Transaction) -> list[JobRecord]:
        return [decode_job(raw) for _, raw in txn.cursor(db=self.env.db["jobs"])]

    def _put(self, txn: lmdb.Transaction, job: JobRecord) -> None:
        job.updated_at = _now()
        txn.put(u64(job.id), encode(job), db=self.env.db["jobs"])

    def submit(self, gid: int, kind: str, params: dict[str, Any], created_at: str) -> JobRecord:
        def submit(txn: lmdb.Transaction) -> JobRecord:
            now = time.time()
            for job in self._all(txn):
                if job.gallery == gid and job.kind == kind and job.active:
                    return job
                if not job.active and job.lease_until < now - KEEP_ENDED_SECONDS:
                    txn.delete(u64(job.id), db=self.env.db["jobs"])
            job = JobRecord(self.env.next_id(txn, "next_job"), gid, kind, QUEUED, params, created_at=created_at)
            self._put(txn, job)
            return job

        return self.env.write(submit)

    def get(self, job_id: int) -> JobRecord | None:
        raw = self.env.read(lambda txn: txn.get(u64(job_id), db=self.env.db["jobs"]))
        return None if raw is None else decode_job(raw)

    def _change(self, job_id: int, change: Any) -> Any:
        def run(txn: lmdb.Transaction) -> Any:
            raw = txn.get(u64(job_id), db=self.env.db["jobs"])
            if raw is None:
                return None
            job = decode_job(raw)
            if not change(job):
                return None
            self._put(txn, job)
            return job

        return self.env.write(run)

    def claim(self, job_id: int, worker: str, lease_seconds: float) -> JobRecord | None:
        def claim(job: JobRecord) -> bool:
            now = time.time()
            if job.state != QUEUED and not (job.state == RUNNING and job.lease_until < now):
                return False
            job.state, job.worker, job.lease_until = RUNNING, worker, now + lease_seconds
            return True

        claimed: JobRecord | None = self._change(job_id, claim)
        return claimed

    def report(self, job_id: int, worker: str, done: int, total: int, lease_seconds: float) -> bool:
        def report(job: JobRecord) -> bool:
            if job.state != RUNNING or job.worker != worker:
                return False
            job.done, job.total, job.lease_until = done, total, time.time() + lease_seconds
            return True

        return self._change(job_id, report) is not None

    def end(self, job_id: int, worker: str, state: str, error: str | None) -> bool:
        def end(job: JobRecord) -> bool:
            if job.state != RUNNING or job.worker != worker or state not in (DONE, FAILED):
                return False
            job.state, job.error, job.lease_until = state, error, time.time()
            return True

        return self._change(job_id, end) is not None

    def claimable(self) -> list[JobRecord]:
        now = time.time()
        jobs = self.env.read(self._all)
        return [job for job in jobs if job.state == QUEUED or (job.state == RUNNING and job.lease_until < now)]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
