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

import psycopg

from ..records import Pending, Placed, Progress, collection_key
from .database import Database, one
from .rows import vector_of

# Advisory lock keys are one bigint: a class in the high 32 bits, the gallery id below (gallery
# ids are bigint, which the two-integer form of the lock functions does not take).
APPLY_LOCK = 0x46530002 << 32  # applying a gallery's outbox
EXCLUSIVE_LOCK = 0x46530003 << 32  # a rebuild or re-embedding holds the gallery


class Applying:
    """``index.catalog.OutboxApply``: one transaction that holds a gallery's apply lock."""

    def __init__(self, cursor: psycopg.Cursor, gid: int) -> None:
        self.cursor, self.gid = cursor, gid

    def next_batch(self, limit: int) -> Pending | None:
        """Read under the apply lock, so a re-embedding cannot switch the pack in between."""
        found = self.cursor.execute("SELECT pack, dim FROM galleries WHERE id = %s", (self.gid,)).fetchone()
        if found is None or found[0] is None:
            return None
        pack, dim = found
        applied = _applied(self.cursor, self.gid, collection_key(pack, dim))
        changes = self.cursor.execute(
            "SELECT seq, op, face FROM changes WHERE gallery = %s AND seq > %s ORDER BY seq LIMIT %s",
            (self.gid, applied, limit),
        ).fetchall()
        faces = sorted({face for _, _, face in changes})
        live = {
            face: (Placed(image, bbox, metadata, collection, created_at), vector_of(raw))
            for face, image, bbox, raw, metadata, collection, created_at in self.cursor.execute(
                "SELECT f.id, f.image, f.bbox, f.vector, i.metadata, i.collection, i.created_at FROM faces f "
                "JOIN images i ON i.id = f.image WHERE f.gallery = %s AND f.id = ANY(%s) AND f.pack = %s",
                (self.gid, faces, pack),
            )
        }
        return Pending(pack, dim, changes, live)

    def record(self, collection: str, seq: int) -> None:
        # clock_timestamp(), not now(): now() is when the transaction began, before it waited for
        # the lock and for Milvus to take the batch, which would make the write look older than
        # it is and let a search read Milvus at Bounded consistency before the write is visible.
        self.cursor.execute(
            "INSERT INTO vector_progress (gallery, collection, applied_seq, applied_at) "
            "VALUES (%s, %s, %s, clock_timestamp()) ON CONFLICT (gallery, collection) "
            "DO UPDATE SET applied_seq = excluded.applied_seq, applied_at = excluded.applied_at",
            (self.gid, collection, seq),
        )


class Outbox:
    """``index.catalog.Outbox`` in PostgreSQL."""

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
    def applying(self, gid: int, wait: bool = True) -> Iterator[Applying | None]:
        with self.db.transaction(long=True) as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK + gid,))
            elif not one(cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", (APPLY_LOCK + gid,)))[0]:
                yield None
                return
            yield Applying(cursor, gid)

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
        with self.db.transaction() as cursor:
            Applying(cursor, gid).record(collection, seq)

    def forget(self, gid: int, collection: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM vector_progress WHERE gallery = %s AND collection = %s", (gid, collection))

    @contextmanager
    def exclusive(self, gid: int, wait: bool) -> Iterator[bool]:
        """Hold the gallery against other rebuilds and re-embeddings, in any process on any machine.

        A session-level advisory lock on a connection kept for the block: the server drops it
        when the holder's connection dies, so a killed holder never blocks the next one."""
        with self.db.session() as connection:
            while True:  # polled rather than blocking, so no statement outlives its timeout
                (held,) = one(connection.execute("SELECT pg_try_advisory_lock(%s)", (EXCLUSIVE_LOCK + gid,)))
                if held or not wait:
                    break
                time.sleep(0.5)
            try:
                yield held
            finally:
                if held:
                    connection.execute("SELECT pg_advisory_unlock(%s)", (EXCLUSIVE_LOCK + gid,))


def _applied(cursor: psycopg.Cursor, gid: int, collection: str) -> int:
    found = cursor.execute(
        "SELECT applied_seq FROM vector_progress WHERE gallery = %s AND collection = %s", (gid, collection)
    ).fetchone()
    return found[0] if found else 0


def _progress(cursor: psycopg.Cursor, gid: int, collection: str) -> Progress:
    head, applied, ago = one(
        cursor.execute(
            "SELECT g.seq, coalesce(p.applied_seq, 0), extract(epoch FROM now() - p.applied_at) FROM galleries g "
            "LEFT JOIN vector_progress p ON p.gallery = g.id AND p.collection = %s WHERE g.id = %s",
            (collection, gid),
        )
    )
    (oldest,) = one(
        cursor.execute(
            "SELECT extract(epoch FROM now() - min(at)) FROM changes WHERE gallery = %s AND seq > %s", (gid, applied)
        )
    )
    return Progress(applied, head, float(oldest or 0.0), None if ago is None else float(ago))
