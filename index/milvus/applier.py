"""Moves committed changes from the catalog's outbox into Milvus, idempotently, with retries.

A change is applied as "delete these face ids, insert those still live" (a face whose image's
metadata or collection changed, ``UPDATE``, is written again with them), so applying a
batch twice (a crash after Milvus took it and before PostgreSQL recorded it) leaves the
same rows. Progress is recorded in the batch's own transaction, under the gallery's
advisory lock: two appliers never interleave on a gallery, and one killed mid-batch only
means the batch is applied again. Every serving replica runs the background loop; the
lock makes them share the work instead of repeating it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..catalog import OutboxCatalog
from ..errors import StorageUnavailableError
from .collection import Collection

log = logging.getLogger(__name__)

BATCH = 2_000  # changes applied per transaction
IDLE_SECONDS = 0.5  # between two looks at the outbox
BACKOFF_SECONDS = (1.0, 2.0, 5.0)  # after consecutive failures (a component down)
TRIM_EVERY_SECONDS = 60.0
KEEP_APPLIED_SECONDS = 3600.0  # applied changes stay this long (a re-embedding may replay them)


class Applier:
    def __init__(self, catalog: OutboxCatalog, collection: Callable[[str, int], Collection]) -> None:
        self.catalog = catalog
        self.collection = collection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.first: Callable[[], object] | None = None  # done once, before any apply, when Milvus answers

    def apply(self, gid: int, wait: bool = True) -> bool:
        """Apply the gallery's outbox to the end; False when another applier holds it (not ``wait``)."""
        outbox = self.catalog.outbox
        while True:
            with outbox.applying(gid, wait) as applying:
                if applying is None:
                    return False
                batch = applying.next_batch(BATCH)
                if batch is None or not batch.changes:
                    return True
                final = {face: op for _, op, face in batch.changes}
                collection = self.collection(batch.pack, batch.dim)
                rows = [
                    collection.row(face, gid, *batch.live[face])
                    for face, op in final.items()
                    if op != "-" and face in batch.live  # added, or its image's metadata changed
                ]
                collection.write(sorted(final), rows)
                applying.record(batch.collection, batch.last)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-applier", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures, trimmed = 0, time.monotonic()
        while not self._stop.wait(
            BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1] if failures else IDLE_SECONDS
        ):
            try:
                if self.first is not None:
                    self.first()
                    self.first = None
                for gid, _ in self.catalog.outbox.lagging():
                    self.apply(gid, wait=False)
                if time.monotonic() - trimmed > TRIM_EVERY_SECONDS:
                    trimmed = time.monotonic()
                    self.catalog.outbox.trim_applied(KEEP_APPLIED_SECONDS)
                if failures:
                    log.info("outbox applier: storage is back, applying again")
                failures = 0
            except StorageUnavailableError as exc:
                if not failures:
                    log.warning("outbox applier: %s; retrying", exc)
                failures += 1
            except Exception:  # keep applying after a bug in one batch; it is retried
                log.exception("outbox applier failed")
                failures += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
