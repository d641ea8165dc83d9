"""Records copied in from another catalog with their ids kept (scripts/migrate.py).

Clients know their images by id, and photo files are named by gallery, so a migrated
deployment keeps every key, gallery, image and face id. Each image goes in with its faces
and their change-log entries (the outbox then carries the copied embeddings to the vector
index); one already present is skipped, so a migration stopped at any point is resumed by
running it again. A gallery's persons, its faces' assignments and its grouping state go in
after its images, in one transaction. ``finish`` moves the id sequences past everything copied.
"""

from __future__ import annotations

import numpy as np
from psycopg.types.json import Json

from ..records import ADD, FaceAssignment, GalleryRecord, GroupingState, ImageRecord, KeyRecord, PersonRecord
from . import rows
from .database import Database
from .galleries import locked_gallery, log_changes, store_gallery
from .persons import PERSON_INSERT, face_places, person_values
from .schema import advance_sequences
from .values import index_image


class Importer:
    def __init__(self, database: Database) -> None:
        self.db = database

    def put_key(self, key: KeyRecord, used: int, gallery: GalleryRecord) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO galleries (id, key, pack, dim, index_generation) VALUES (%s, %s, %s, %s, 0) "
                "ON CONFLICT (id) DO NOTHING",
                (key.gallery, key.name, gallery.pack, gallery.dim),
            )
            cursor.execute(
                "INSERT INTO keys (name, gallery, secret_hash, quota, revoked, created_at, used) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "secret_hash = excluded.secret_hash, quota = excluded.quota, revoked = excluded.revoked, "
                "used = excluded.used",
                (key.name, key.gallery, key.secret_hash, key.quota, key.revoked, key.created_at, used),
            )

    def present(self, gid: int) -> set[int]:
        """The images of the gallery copied already."""
        with self.db.transaction() as cursor:
            return {row[0] for row in cursor.execute("SELECT id FROM images WHERE gallery = %s", (gid,))}

    def put_images(self, gid: int, records: list[ImageRecord], vectors: dict[int, np.ndarray]) -> None:
        """Copy the images with their faces' embeddings, in one transaction."""
        with self.db.transaction() as cursor:
            gallery = locked_gallery(cursor, gid)
            for record in records:
                cursor.execute(rows.IMAGE_INSERT, rows.image_insert(record))
                index_image(cursor, gid, record)
                cursor.executemany(
                    "INSERT INTO faces (gallery, id, image, pack, bbox, vector) VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (gid, face.id, record.id, record.pack, Json(face.bbox), rows.vector_bytes(vectors[face.id]))
                        for face in record.faces
                    ],
                )
                log_changes(cursor, gid, gallery, ADD, [face.id for face in record.faces])
                gallery.images += 1
                gallery.faces += len(record.faces)
            store_gallery(cursor, gid, gallery)

    def put_persons(
        self, gid: int, persons: list[PersonRecord], assignments: dict[int, FaceAssignment], state: GroupingState
    ) -> None:
        with self.db.transaction() as cursor:
            locked_gallery(cursor, gid)
            if cursor.execute("SELECT 1 FROM face_persons WHERE gallery = %s LIMIT 1", (gid,)).fetchone():
                return  # copied already (persons and their faces go in together)
            cursor.executemany(PERSON_INSERT, [(gid, p.id, *person_values(p), p.created_at) for p in persons])
            faces = sorted(assignments)
            for start in range(0, len(faces), FACES_AT_ONCE):
                chosen = faces[start : start + FACES_AT_ONCE]
                placed = []
                for face, (image, rank) in face_places(cursor, gid, chosen).items():
                    a = assignments[face]
                    placed.append((gid, face, image, a.person, a.by_user, a.kept_out, rank if a.person else 0))
                cursor.executemany(
                    "INSERT INTO face_persons (gallery, face, image, person, by_user, kept_out, quality) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    placed,
                )
            cursor.execute(
                "INSERT INTO person_state (gallery, pending, watermark) VALUES (%s, %s, %s) ON CONFLICT (gallery) "
                "DO UPDATE SET pending = excluded.pending, watermark = excluded.watermark",
                (gid, state.pending, state.watermark),
            )

    def finish(self) -> None:
        with self.db.transaction() as cursor:
            advance_sequences(cursor)


FACES_AT_ONCE = 10_000  # face assignments looked up and written per statement
