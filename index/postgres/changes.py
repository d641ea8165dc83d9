"""Each gallery's change log in PostgreSQL, which is also the vector index's outbox, and
consistent snapshots of a gallery's vectors."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg

from ..catalog import Batch
from ..errors import GenerationConflictError
from ..records import Change, ChangeBatch, GalleryRecord, Snapshot
from . import rows
from .database import Database, one
from .galleries import locked_gallery, store_gallery
from .images import face_vectors

SNAPSHOT_ROWS = 20_000  # vectors fetched per round trip while reading a whole gallery


class PostgresChangeLog:
    def __init__(self, database: Database) -> None:
        self.db = database

    def since(self, gid: int, seq: int) -> ChangeBatch:
        with self.db.transaction(snapshot=True) as cursor:
            (first,) = one(cursor.execute("SELECT min(seq) FROM changes WHERE gallery = %s", (gid,)))
            found = cursor.execute(
                "SELECT seq, op, face FROM changes WHERE gallery = %s AND seq > %s AND op <> '~' ORDER BY seq",
                (gid, seq),
            ).fetchall()
            changes = [Change(s, op.encode(), face) for s, op, face in found]
            added = [change.face for change in changes if change.is_add]
            vectors = face_vectors(cursor, gid, added) if added else {}
        return ChangeBatch(changes, vectors, first)

    def counts(self, gid: int, seq: int) -> tuple[int, int]:
        with self.db.transaction() as cursor:
            adds, removes = one(
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE op = '+'), count(*) FILTER (WHERE op = '-') FROM changes "
                    "WHERE gallery = %s AND seq > %s",
                    (gid, seq),
                )
            )
        return adds, removes

    def trim(self, gid: int, upto: int) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM changes WHERE gallery = %s AND seq <= %s", (gid, upto))

    def snapshot(self, gid: int) -> Snapshot:
        with self.scan(gid, SNAPSHOT_ROWS) as (gallery, batches):
            return Snapshot.gather(gallery, batches)

    @contextmanager
    def scan(self, gid: int, batch: int) -> Iterator[tuple[GalleryRecord, Iterator[Batch]]]:
        """One repeatable-read transaction for the whole walk (every batch sees what was
        committed when it began), the rows streamed from a server-side cursor."""
        with self.db.transaction(long=True, snapshot=True) as cursor:
            found = cursor.execute(f"SELECT {rows.GALLERY} FROM galleries WHERE id = %s", (gid,)).fetchone()
            if found is None:
                raise KeyError(gid)
            gallery = rows.gallery(found)
            batches = _batches(cursor.connection, gid, gallery.dim or 0, batch)
            try:
                yield gallery, batches
            finally:
                batches.close()  # the cursor goes before its transaction, however far the caller read

    def commit_generation(self, gid: int, expected: int) -> GalleryRecord:
        with self.db.transaction() as cursor:
            gallery = locked_gallery(cursor, gid)
            if gallery.index_generation != expected:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            gallery.index_generation += 1
            store_gallery(cursor, gid, gallery)
        return gallery


def _batches(connection: psycopg.Connection, gid: int, dim: int, batch: int) -> Generator[Batch, None, None]:
    with connection.cursor("scan") as cursor:  # server side: at most one batch in memory
        cursor.execute("SELECT id, vector FROM faces WHERE gallery = %s ORDER BY id", (gid,))
        while found := cursor.fetchmany(batch):
            ids = np.fromiter((face for face, _ in found), dtype=np.int64, count=len(found))
            vectors = np.frombuffer(b"".join(raw for _, raw in found), dtype="<f4").reshape(len(found), dim)
            yield ids, vectors.astype(np.float32)
