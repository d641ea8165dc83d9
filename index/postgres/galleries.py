"""A gallery's row, locked by each write of the gallery, and its change log (the outbox).

A write takes its gallery's row lock first (``FOR UPDATE``), so a gallery's writes are
serialised and its change log's seqs commit in order.
"""

from __future__ import annotations

import psycopg

from ..records import REMOVE, GalleryRecord
from . import rows


def locked_gallery(cursor: psycopg.Cursor, gid: int) -> GalleryRecord:
    """The gallery's record, locked until the transaction ends; KeyError when there is none."""
    found = cursor.execute(f"SELECT {rows.GALLERY} FROM galleries WHERE id = %s FOR UPDATE", (gid,)).fetchone()
    if found is None:
        raise KeyError(gid)
    return rows.gallery(found)


def store_gallery(cursor: psycopg.Cursor, gid: int, gallery: GalleryRecord) -> None:
    cursor.execute(
        "UPDATE galleries SET pack = %s, dim = %s, seq = %s, images = %s, faces = %s, index_generation = %s "
        "WHERE id = %s",
        (gallery.pack, gallery.dim, gallery.seq, gallery.images, gallery.faces, gallery.index_generation, gid),
    )


def log_changes(cursor: psycopg.Cursor, gid: int, gallery: GalleryRecord, op: bytes, face_ids: list[int]) -> None:
    """Append changes to the gallery's log (the outbox); the caller stores the gallery (its seq)."""
    first = gallery.seq + 1
    gallery.seq += len(face_ids)
    cursor.executemany(
        "INSERT INTO changes (gallery, seq, op, face) VALUES (%s, %s, %s, %s)",
        [(gid, first + n, op.decode(), face) for n, face in enumerate(face_ids)],
    )


def remove_faces(cursor: psycopg.Cursor, gid: int, gallery: GalleryRecord, face_ids: list[int]) -> None:
    if face_ids:
        cursor.execute("DELETE FROM faces WHERE gallery = %s AND id = ANY(%s)", (gid, face_ids))
        log_changes(cursor, gid, gallery, REMOVE, face_ids)
        gallery.faces -= len(face_ids)
