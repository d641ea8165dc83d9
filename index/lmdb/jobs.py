"""Bulk jobs of an embedded catalog: every batch goes to the process that planned the job.

One machine holds the catalog, so there are no other machines to share a job with: a job
lives in the memory of the process running it, which claims its batches in order and
forgets it once the last is done. A job killed half-way is not resumed from here: its work
is idempotent (an import skips the photos it stored, a re-embedding the images it staged),
so running it again plans it again and skips what was done.
"""

from __future__ import annotations

import threading
from typing import Any

from ..records import JobBatch


class LocalJobs:
    """``index.catalog.BulkJobs`` within one process."""

    shared = False

    def __init__(self) -> None:
        self._batches: dict[str, list[list[Any]]] = {}
        self._done: dict[str, set[int]] = {}
        self._claimed: dict[str, set[int]] = {}
        self._lock = threading.Lock()

    def plan(self, job: str, batches: list[list[Any]]) -> int:
        with self._lock:
            if job not in self._batches and not batches:
                return 0  # nothing to do, nothing to remember
            planned = self._batches.setdefault(job, batches)
            self._done.setdefault(job, set())
            self._claimed.setdefault(job, set())
            return len(planned)

    def claim(self, job: str, worker: str, lease_seconds: float) -> JobBatch | None:
        """Leases need not run out here: a worker that dies takes the job's memory with it."""
        with self._lock:
            claimed = self._claimed.get(job, set())
            number = next((n for n in range(len(self._batches.get(job, []))) if n not in claimed), None)
            if number is None:
                return None
            claimed.add(number)
            return JobBatch(job, number, self._batches[job][number])

    def finish(self, batch: JobBatch, worker: str) -> bool:
        with self._lock:
            done = self._done.get(batch.job)
            if done is None:
                return False
            done.add(batch.number)
            if len(done) == len(self._batches[batch.job]):  # the job is over: nothing to resume it from
                for table in (self._batches, self._done, self._claimed):
                    del table[batch.job]
            return True

    def remaining(self, job: str) -> tuple[int, int]:
        with self._lock:
            total = len(self._batches.get(job, []))
            return total - len(self._done.get(job, set())), total
