"""Re-embedded vectors staged in PostgreSQL beside the serving ones, and their atomic swap."""

from __future__ import annotations

import numpy as np

from ..errors import GenerationConflictError, StagingIncompleteError
from ..records import GalleryRecord, StagedSnapshot
from . import rows
from .database import Database, one
from .images import image_ids, locked_gallery, remove_faces, store_gallery


class PostgresStaging:
    def __init__(self, database: Database) -> None:
        self.db = database

    def stage(self, gid: int, image_id: int, pack: str, vectors: dict[int, np.ndarray]) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM staged WHERE gallery = %s AND image = %s", (gid, image_id))
            cursor.executemany(
                "INSERT INTO staged (gallery, face, image, pack, vector) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (gallery, face) DO UPDATE SET image = excluded.image, pack = excluded.pack, "
                "vector = excluded.vector",
                [(gid, face, image_id, pack, rows.vector_bytes(vector)) for face, vector in vectors.items()],
            )
            cursor.execute(
                "INSERT INTO staged_images (gallery, image, pack) VALUES (%s, %s, %s) "
                "ON CONFLICT (gallery, image) DO UPDATE SET pack = excluded.pack",
                (gid, image_id, pack),
            )

    def staged_images(self, gid: int, pack: str) -> set[int]:
        with self.db.transaction() as cursor:
            found = cursor.execute("SELECT image FROM staged_images WHERE gallery = %s AND pack = %s", (gid, pack))
            return {row[0] for row in found}

    def snapshot(self, gid: int, pack: str) -> StagedSnapshot:
        with self.db.transaction(long=True, snapshot=True) as cursor:
            found = cursor.execute(f"SELECT {rows.GALLERY} FROM galleries WHERE id = %s", (gid,)).fetchone()
            if found is None:
                raise KeyError(gid)
            gallery = rows.gallery(found)
            missing = [
                row[0]
                for row in cursor.execute(
                    "SELECT i.id FROM images i LEFT JOIN staged_images s ON s.gallery = i.gallery AND s.image = i.id "
                    "AND s.pack = %s WHERE i.gallery = %s AND s.image IS NULL ORDER BY i.id",
                    (pack, gid),
                )
            ]
            staged = cursor.execute(
                "SELECT s.face, s.vector FROM staged s JOIN faces f ON f.gallery = s.gallery AND f.id = s.face "
                "JOIN staged_images si ON si.gallery = s.gallery AND si.image = s.image AND si.pack = %s "
                "WHERE s.gallery = %s AND s.pack = %s ORDER BY s.face",
                (pack, gid, pack),
            ).fetchall()
        ids = np.array([face for face, _ in staged], dtype=np.int64)
        vectors = np.stack([rows.vector_of(raw) for _, raw in staged]) if staged else np.zeros((0, 0), np.float32)
        return StagedSnapshot(gallery, ids, vectors, missing)

    def swap(self, gid: int, pack: str, dim: int, since_seq: int, generation: int) -> GalleryRecord:
        with self.db.transaction(long=True) as cursor:
            gallery = locked_gallery(cursor, gid)
            if gallery.index_generation != generation:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            (late,) = one(
                cursor.execute(
                    "SELECT count(*) FROM changes WHERE gallery = %s AND seq > %s AND op = '+'", (gid, since_seq)
                )
            )
            if late:
                raise StagingIncompleteError(f"faces were added to gallery {gid} during the re-embedding")
            ids = image_ids(cursor, gid)
            staged_images = {
                row[0]
                for row in cursor.execute(
                    "SELECT image FROM staged_images WHERE gallery = %s AND pack = %s", (gid, pack)
                )
            }
            if missing := [image_id for image_id in ids if image_id not in staged_images]:
                raise StagingIncompleteError(f"image {missing[0]} of gallery {gid} is not re-embedded")
            staged = {
                face
                for (face,) in cursor.execute("SELECT face FROM staged WHERE gallery = %s AND pack = %s", (gid, pack))
            }
            records = [rows.image(row) for row in cursor.execute(
                f"SELECT {rows.IMAGE} FROM images WHERE gallery = %s ORDER BY id", (gid,)
            ).fetchall()]  # fmt: skip
            lost = [face.id for record in records for face in record.faces if face.id not in staged]
            remove_faces(cursor, gid, gallery, lost)
            cursor.execute(
                "UPDATE faces f SET vector = s.vector, pack = s.pack FROM staged s "
                "WHERE f.gallery = %s AND s.gallery = f.gallery AND s.face = f.id AND s.pack = %s",
                (gid, pack),
            )
            for record in records:
                kept = [face for face in record.faces if face.id in staged]
                cursor.execute(
                    "UPDATE images SET faces = %s, pack = %s WHERE id = %s", (rows.faces_json(kept), pack, record.id)
                )
            for table in ("staged", "staged_images"):
                cursor.execute(f"DELETE FROM {table} WHERE gallery = %s", (gid,))
            gallery.pack, gallery.dim = pack, dim
            gallery.index_generation += 1
            store_gallery(cursor, gid, gallery)
        return gallery
