"""The change log read as an outbox: how far each vector collection has applied it.

The change log rows are the outbox (a write commits its changes with the record, in one
transaction). A vector backend applies them in seq order, idempotently, and records the
seq it reached here; applying a gallery's outbox holds that gallery's advisory lock, so
two appliers never interleave their writes to the same gallery.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg

from .database import Database
from .rows import vector_of

# Advisory lock keys are one bigint: a class in the high 32 bits, the gallery id below (gallery
# ids are bigint, which the two-integer form of the lock functions does not take).
APPLY_LOCK = 0x46530002 << 32  # applying a gallery's outbox
EXCLUSIVE_LOCK = 0x46530003 << 32  # a rebuild or re-embedding holds the gallery


def collection_key(pack: str, dim: int) -> str:
    """How the outbox names the vectors of one pack and dimension (a vector backend maps it to its own name)."""
    return f"{pack}/{dim}"


@dataclass(frozen=True)
class Pending:
    """The next changes of a gallery's outbox, with what the faces still live look like now."""

    pack: str
    dim: int
    changes: list[tuple[int, str, int]]  # (seq, op, face) in seq order
    live: dict[int, tuple[int, list[float], np.ndarray]]  # face -> (image, box, vector), for the faces still stored

    @property
    def collection(self) -> str:
        return collection_key(self.pack, self.dim)

    @property
    def last(self) -> int:
        return self.changes[-1][0]


@dataclass(frozen=True)
class Progress:
    """Where a gallery's vectors in one collection stand against its change log."""

    applied: int  # the last seq applied
    head: int  # the gallery's last seq
    oldest_pending_seconds: float  # age of the oldest change not applied yet (0: none)
    applied_seconds_ago: float | None  # since the last apply committed (None: never)

    @property
    def pending(self) -> int:
        return max(0, self.head - self.applied)


class Outbox:
    def __init__(self, database: Database) -> None:
        self.db = database

    def progress(self, gid: int, collection: str) -> Progress:
        with self.db.transaction() as cursor:
            return _progress(cursor, gid, collection)

    def lagging(self) -> list[tuple[int, int]]:
        """(gallery, head seq) of every gallery some change of which is not applied to its collection.

        A gallery without a pack has no collection yet and nothing to apply."""
        with self.db.transaction() as cursor:
            return cursor.execute(
                "SELECT g.id, g.seq FROM galleries g LEFT JOIN vector_progress p ON p.gallery = g.id "
                "AND p.collection = g.pack || '/' || g.dim WHERE g.pack IS NOT NULL "
                "AND g.seq > coalesce(p.applied_seq, 0)"
            ).fetchall()

    @contextmanager
    def applying(self, gid: int, wait: bool = True) -> Iterator[psycopg.Cursor | None]:
        """Hold the gallery's apply lock for one transaction (None at once when taken and not
        ``wait``); the block reads ``next_batch``, applies it and ``record``s how far it got."""
        with self.db.transaction(long=True) as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK + gid,))
            elif not cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (APPLY_LOCK + gid,)).fetchone()[0]:
                yield None
                return
            yield cursor

    def next_batch(self, cursor: psycopg.Cursor, gid: int, limit: int) -> Pending | None:
        """The changes after what the gallery's current collection has applied (None: no pack yet).

        Read under the apply lock, so a re-embedding cannot switch the pack in between."""
        found = cursor.execute("SELECT pack, dim FROM galleries WHERE id = %s", (gid,)).fetchone()
        if found is None or found[0] is None:
            return None
        pack, dim = found
        applied = self.applied(cursor, gid, collection_key(pack, dim))
        changes = cursor.execute(
            "SELECT seq, op, face FROM changes WHERE gallery = %s AND seq > %s ORDER BY seq LIMIT %s",
            (gid, applied, limit),
        ).fetchall()
        faces = sorted({face for _, _, face in changes})
        live = {
            face: (image, bbox, vector_of(raw))
            for face, image, bbox, raw in cursor.execute(
                "SELECT id, image, bbox, vector FROM faces WHERE gallery = %s AND id = ANY(%s) AND pack = %s",
                (gid, faces, pack),
            )
        }
        return Pending(pack, dim, changes, live)

    def trim_applied(self, older_than_seconds: float) -> int:
        """Drop changes every collection holding the gallery applied more than a while ago.

        Kept a while, not dropped at once, and never past what any of the gallery's collections
        applied: a re-embedding's new collection (filled from a snapshot) replays the removes
        made after that snapshot from here. A gallery being applied right now is skipped."""
        with self.db.transaction(long=True) as cursor:
            found = cursor.execute(
                "WITH done AS (SELECT gallery AS id, min(applied_seq) AS applied_seq FROM vector_progress "
                "GROUP BY gallery HAVING pg_try_advisory_xact_lock(%s::bigint + gallery)) "
                "DELETE FROM changes c USING done WHERE c.gallery = done.id AND c.seq <= done.applied_seq "
                "AND c.at < now() - make_interval(secs => %s) RETURNING 1",
                (APPLY_LOCK, older_than_seconds),
            ).fetchall()
        return len(found)

    def mark(self, gid: int, collection: str, seq: int) -> None:
        """Say the collection holds the gallery as of ``seq`` (it was just filled from a snapshot)."""
        with self.db.transaction() as cursor:
            self.record(cursor, gid, collection, seq)

    def forget(self, gid: int, collection: str) -> None:
        """The collection no longer holds the gallery (a re-embedding moved it to another)."""
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM vector_progress WHERE gallery = %s AND collection = %s", (gid, collection))

    @staticmethod
    def applied(cursor: psycopg.Cursor, gid: int, collection: str) -> int:
        found = cursor.execute(
            "SELECT applied_seq FROM vector_progress WHERE gallery = %s AND collection = %s", (gid, collection)
        ).fetchone()
        return found[0] if found else 0

    @staticmethod
    def record(cursor: psycopg.Cursor, gid: int, collection: str, seq: int) -> None:
        cursor.execute(
            "INSERT INTO vector_progress (gallery, collection, applied_seq, applied_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (gallery, collection) DO UPDATE SET applied_seq = excluded.applied_seq, applied_at = now()",
            (gid, collection, seq),
        )

    @contextmanager
    def exclusive(self, gid: int, wait: bool) -> Iterator[bool]:
        """Hold the gallery against other rebuilds and re-embeddings, in any process on any machine.

        A session-level advisory lock on a connection kept for the block: the server drops it
        when the holder's connection dies, so a killed holder never blocks the next one."""
        with self.db.session() as connection:
            while True:  # polled rather than blocking, so no statement outlives its timeout
                (held,) = connection.execute("SELECT pg_try_advisory_lock(%s)", (EXCLUSIVE_LOCK + gid,)).fetchone()
                if held or not wait:
                    break
                time.sleep(0.5)
            try:
                yield held
            finally:
                if held:
                    connection.execute("SELECT pg_advisory_unlock(%s)", (EXCLUSIVE_LOCK + gid,))


def _progress(cursor: psycopg.Cursor, gid: int, collection: str) -> Progress:
    head, applied, ago = cursor.execute(
        "SELECT g.seq, coalesce(p.applied_seq, 0), extract(epoch FROM now() - p.applied_at) FROM galleries g "
        "LEFT JOIN vector_progress p ON p.gallery = g.id AND p.collection = %s WHERE g.id = %s",
        (collection, gid),
    ).fetchone()
    (oldest,) = cursor.execute(
        "SELECT extract(epoch FROM now() - min(at)) FROM changes WHERE gallery = %s AND seq > %s", (gid, applied)
    ).fetchone()
    return Progress(applied, head, float(oldest or 0.0), None if ago is None else float(ago))
