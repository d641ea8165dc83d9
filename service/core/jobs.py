"""Long operations on a gallery (a grouping run), as jobs any process can start, run and report on.

A job is a catalog record (``index.catalog.JobRecords``): whichever worker claims it runs it
under a lease it renews every few seconds, so on one machine or many, one worker runs a
gallery's job at a time, and ``GET /jobs/<id>`` answers from any of them. A serving process
runs a job in a child process at a lower CPU priority, so its searches keep their speed; a
child dies with its parent. A runner that dies lets its lease run out, and the next look for
work (every serving process looks every ``POLL_SECONDS``) takes the job over and runs it
again: a grouping run's commits are whole and applied only as far as they still hold, so a
run done twice only costs time.

Serving processes also start a grouping run by themselves once a gallery has
``GroupingSettings.after`` faces that no person took at their add.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from index.catalog import Catalog
from index.records import DONE, FAILED, JobRecord

from .errors import JobNotFound, writing
from .group_run import GroupingRun
from .keys import now

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

GROUP_FACES = "group_faces"  # the kind of a grouping run
HEARTBEATS = 6  # a runner renews its lease (and records its progress) this many times a lease
POLL_SECONDS = 10.0  # how often a serving process looks for jobs to start or take over
NICE = 10  # a job's child process gives way to the server's searches


@dataclass(frozen=True)
class Job:
    """A job as a client sees it."""

    id: int
    kind: str
    state: str
    done: int
    total: int
    error: str | None

    @classmethod
    def of(cls, record: JobRecord) -> Job:
        return cls(record.id, record.kind, record.state, record.done, record.total, record.error)

    @property
    def ended(self) -> bool:
        return self.state in (DONE, FAILED)


class LeaseLost(RuntimeError):
    """Another worker took the job over (this one was taken to be dead): stop."""


class Heartbeat:
    """Renews a job's lease and records its progress a few times a lease, beside the work."""

    def __init__(self, catalog: Catalog, job: JobRecord, worker: str, lease_seconds: float) -> None:
        self.catalog, self.job, self.worker, self.lease = catalog, job, worker, lease_seconds
        self.done, self.total = 0, 0
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"job-{job.id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def progress(self, done: int, total: int) -> None:
        """The work's progress; LeaseLost once another worker holds the job."""
        self.done, self.total = done, total
        if self.lost:
            raise LeaseLost(f"job {self.job.id} was taken over by another worker")

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / HEARTBEATS):
            try:
                if not self.catalog.job_records.report(self.job.id, self.worker, self.done, self.total, self.lease):
                    self.lost = True
                    return
            except OSError as exc:  # storage down for a moment: the lease has time to spare
                log.warning("job %d: progress not recorded: %s", self.job.id, exc)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Jobs:
    """Jobs of a key's gallery: started, read, and run."""

    def __init__(self, catalog: Catalog, group_run: Callable[[], GroupingRun], settings: Settings) -> None:
        self.catalog, self.group_run, self.settings = catalog, group_run, settings
        self._running: dict[int, BaseProcess | None] = {}  # jobs this process runs (their child, once started)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def start_grouping(self, gid: int, full: bool = False) -> Job:
        """A grouping run of the gallery (the one under way, if there is one), started now in
        the background of this process."""
        with writing():
            job = self.catalog.job_records.submit(gid, GROUP_FACES, {"full": full}, now())
        self.launch(job)
        return Job.of(self.catalog.job_records.get(job.id) or job)

    def run_here(self, gid: int, full: bool = False, progress: Callable[[int, int], object] = lambda d, t: None) -> Job:
        """A grouping run of the gallery, in this process, to its end (a script's): the job as it
        ended, or as another worker runs it when one does already."""
        with writing():
            job = self.catalog.job_records.submit(gid, GROUP_FACES, {"full": full}, now())
        worker = f"{worker_name()}:{job.id}"
        claimed = self.catalog.job_records.claim(job.id, worker, self.settings.grouping.lease_seconds)
        if claimed is not None:
            self.perform(claimed, worker, progress)
        return Job.of(self.catalog.job_records.get(job.id) or job)

    def get(self, gid: int, job_id: int) -> Job:
        found = self.catalog.job_records.get(job_id)
        if found is None or found.gallery != gid:
            raise JobNotFound(f"no job with id {job_id}")
        return Job.of(found)

    def perform(self, job: JobRecord, worker: str, progress: Callable[[int, int], object] = lambda d, t: None) -> None:
        """Run a job this worker has claimed, here, to its end (done, or failed with why)."""
        with Heartbeat(self.catalog, job, worker, self.settings.grouping.lease_seconds) as beat:

            def step(done: int, total: int) -> None:
                beat.progress(done, total)
                progress(done, total)

            try:
                summary = self.group_run().run(job.gallery, bool(job.params.get("full")), step)
            except LeaseLost:
                log.warning("job %d: taken over by another worker; stopping", job.id)
                return
            except Exception as exc:
                log.exception("job %d failed", job.id)
                self.catalog.job_records.end(job.id, worker, FAILED, f"{type(exc).__name__}: {exc}")
                raise
        lease = self.settings.grouping.lease_seconds
        finished = self.catalog.job_records.report(job.id, worker, max(beat.done, beat.total), beat.total, lease)
        if finished:
            self.catalog.job_records.end(job.id, worker, DONE, None)
            log.info("job %d done: %s", job.id, summary)

    # -- in a serving process ----------------------------------------------------------------

    def launch(self, job: JobRecord) -> bool:
        """Claim the job and run it in a child process, watched by a thread of this one; False
        when another worker holds it (or this process runs it already)."""
        with self._lock:
            if self._stop.is_set() or job.id in self._running:
                return False
            self._running[job.id] = None
        worker = f"{worker_name()}:{job.id}"
        claimed = self.catalog.job_records.claim(job.id, worker, self.settings.grouping.lease_seconds)
        if claimed is None:
            with self._lock:
                del self._running[job.id]
            return False
        threading.Thread(target=self._watch, args=(claimed, worker), name=f"job-{job.id}", daemon=True).start()
        return True

    def _watch(self, job: JobRecord, worker: str) -> None:
        context = multiprocessing.get_context("spawn")
        child = context.Process(target=run_in_child, args=(self.settings, job, worker), name=f"job-{job.id}")
        try:
            with self._lock:
                if self._stop.is_set():
                    return
                child.start()
                self._running[job.id] = child
            child.join()
            if child.exitcode != 0 and not self._stop.is_set():
                why = f"the job's process exited with {child.exitcode}"
                if self.catalog.job_records.end(job.id, worker, FAILED, why):
                    log.error("job %d: %s", job.id, why)
        except Exception:
            log.exception("job %d: could not be run", job.id)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def serve(self) -> None:
        """Look for work every ``POLL_SECONDS``: galleries due for a run, jobs queued or left by
        a dead runner."""
        self._poller = threading.Thread(target=self._poll, name="jobs", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.look()
            except Exception:  # storage down, or a bug: look again at the next turn
                log.exception("looking for jobs failed")

    def look(self) -> None:
        """Queue a run for each gallery due for one, then start what is queued or abandoned."""
        after = self.settings.grouping.after
        for gid in self.catalog.grouping.due(after) if after else ():
            self.catalog.job_records.submit(gid, GROUP_FACES, {}, now())
        for job in self.catalog.job_records.claimable():
            self.launch(job)

    def close(self) -> None:
        """Stop looking, and stop the children (their jobs are taken over once their leases run out)."""
        self._stop.set()
        with self._lock:
            children = [child for child in self._running.values() if child is not None]
        for child in children:
            child.terminate()
        if self._poller is not None:
            self._poller.join(timeout=POLL_SECONDS)


def run_in_child(settings: Settings, job: JobRecord, worker: str) -> None:
    """Entry point of a job's child process: its own storage handles, at a lower priority, and
    gone with its parent."""
    from .services import build_services  # the composition root, in the child only

    logging.basicConfig(level=logging.INFO, format="%(asctime)s job %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # which build it loads
    _die_with_parent()
    os.nice(NICE)
    with build_services(settings) as services:
        services.jobs.perform(job, worker)


def _die_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG: SIGKILL this process when its parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request was made
        os._exit(1)
