"""Each gallery's change log in PostgreSQL, which is also the vector index's outbox, and
consistent snapshots of a gallery's vectors."""

from __future__ import annotations

import numpy as np

from ..errors import GenerationConflictError
from ..records import Change, ChangeBatch, GalleryRecord, Snapshot
from . import rows
from .database import Database
from .images import locked_gallery, store_gallery

SNAPSHOT_ROWS = 20_000  # vectors fetched per round trip while reading a whole gallery


class PostgresChangeLog:
    def __init__(self, database: Database) -> None:
        self.db = database

    def since(self, gid: int, seq: int) -> ChangeBatch:
        with self.db.transaction(snapshot=True) as cursor:
            (first,) = cursor.execute("SELECT min(seq) FROM changes WHERE gallery = %s", (gid,)).fetchone()
            found = cursor.execute(
                "SELECT seq, op, face FROM changes WHERE gallery = %s AND seq > %s ORDER BY seq", (gid, seq)
            ).fetchall()
            changes = [Change(s, op.encode(), face) for s, op, face in found]
            added = [change.face for change in changes if change.is_add]
            vectors = {}
            if added:
                for face, raw in cursor.execute(
                    "SELECT id, vector FROM faces WHERE gallery = %s AND id = ANY(%s)", (gid, added)
                ):
                    vectors[face] = rows.vector_of(raw)
        return ChangeBatch(changes, vectors, first)

    def counts(self, gid: int, seq: int) -> tuple[int, int]:
        with self.db.transaction() as cursor:
            adds, removes = cursor.execute(
                "SELECT count(*) FILTER (WHERE op = '+'), count(*) FILTER (WHERE op = '-') FROM changes "
                "WHERE gallery = %s AND seq > %s",
                (gid, seq),
            ).fetchone()
        return adds, removes

    def trim(self, gid: int, upto: int) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM changes WHERE gallery = %s AND seq <= %s", (gid, upto))

    def snapshot(self, gid: int) -> Snapshot:
        """Vectors land in one preallocated array: a million faces cost their 2 GB once, not twice."""
        with self.db.transaction(long=True, snapshot=True) as cursor:
            found = cursor.execute(f"SELECT {rows.GALLERY} FROM galleries WHERE id = %s", (gid,)).fetchone()
            if found is None:
                raise KeyError(gid)
            gallery = rows.gallery(found)
            ids = np.empty(gallery.faces, dtype=np.int64)
            vectors = np.empty((gallery.faces, gallery.dim or 0), dtype=np.float32)
            count = 0
            with cursor.connection.cursor("snapshot") as rows_of:  # server side: streamed, not held twice
                rows_of.execute("SELECT id, vector FROM faces WHERE gallery = %s", (gid,))
                while batch := rows_of.fetchmany(SNAPSHOT_ROWS):
                    if count + len(batch) > len(ids):
                        raise RuntimeError(f"gallery {gid} holds more faces than its record counts")
                    for face, raw in batch:
                        ids[count] = face
                        vectors[count] = rows.vector_of(raw)
                        count += 1
        return Snapshot(gallery, ids[:count], vectors[:count])

    def commit_generation(self, gid: int, expected: int) -> GalleryRecord:
        with self.db.transaction() as cursor:
            gallery = locked_gallery(cursor, gid)
            if gallery.index_generation != expected:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            gallery.index_generation += 1
            store_gallery(cursor, gid, gallery)
        return gallery
