"""The one way faces leave the PostgreSQL catalog: an image deleted and a person forgotten both
drop faces here, and the images left with none."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import psycopg

from ..records import GalleryRecord, ImageRecord
from . import rows
from .galleries import remove_faces, store_gallery


def drop_faces(
    cursor: psycopg.Cursor, gid: int, gallery: GalleryRecord, by_image: Mapping[int, Collection[int] | None]
) -> tuple[list[ImageRecord], list[int]]:
    """Drop faces of the gallery's images (None: every face of the image) in the transaction
    that holds the gallery's row lock (``gallery``, its record, whose counts are kept and
    stored): their rows (each removal logged for the vector index) and their place in the image
    rows; an image left with no face is deleted whole, with its metadata rows. Images of another
    gallery and unknown ones are skipped. Returns (the images deleted, in the order given; the ids
    of the images that kept some face). The persons the faces were in are the caller's
    (``index.persons``), in the same transaction."""
    found = cursor.execute(
        f"SELECT {rows.IMAGE} FROM images WHERE gallery = %s AND id = ANY(%s)", (gid, list(by_image))
    ).fetchall()
    records = {row[0]: rows.image(row) for row in found}
    deleted: list[ImageRecord] = []
    changed: list[int] = []
    gone: list[int] = []
    for image_id, chosen in by_image.items():
        record = records.get(image_id)
        if record is None:
            continue
        gone += [face.id for face in record.faces if chosen is None or face.id in chosen]
        if kept := [face for face in record.faces if chosen is not None and face.id not in chosen]:
            cursor.execute("UPDATE images SET faces = %s WHERE id = %s", (rows.faces_json(kept), image_id))
            changed.append(image_id)
        else:
            deleted.append(record)
    if deleted:
        ids = [record.id for record in deleted]
        cursor.execute("DELETE FROM images WHERE id = ANY(%s)", (ids,))
        cursor.execute("DELETE FROM image_values WHERE image = ANY(%s)", (ids,))
        gallery.images -= len(deleted)
    remove_faces(cursor, gid, gallery, sorted(gone))
    if gone:
        store_gallery(cursor, gid, gallery)
    return deleted, changed
