"""Galleries, image records, face embeddings and bulk-import digests in PostgreSQL.

A write takes its gallery's row lock first (``FOR UPDATE``), so a gallery's writes are
serialised and its change log's seqs commit in order: whoever reads the log after some
seq never finds a smaller one appearing later. That is what lets the outbox be applied
by position alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Json

import index.persons as rules

from ..errors import CommitUnknownError, PackMismatchError, StorageUnavailableError
from ..filters import COLLECTION, CREATED, EVERYTHING, Expr, Facts, Scope, created_seconds, matches, paths
from ..records import ADD, UPDATE, CollectionCount, FaceInfo, GalleryRecord, IdSet, ImageRecord, NewImage
from . import rows
from .database import Database, one
from .galleries import locked_gallery, log_changes, store_gallery
from .persons import PgRows
from .removal import drop_faces
from .values import TRUE, Compiler, Sql, index_image, registry


def _stored(cursor: psycopg.Cursor, gid: int, image_id: int) -> bool:
    """Whether the image is stored, once no transaction can still be writing the gallery."""
    locked_gallery(cursor, gid)
    return cursor.execute("SELECT 1 FROM images WHERE id = %s", (image_id,)).fetchone() is not None


def face_vectors(cursor: psycopg.Cursor, gid: int, face_ids: list[int]) -> dict[int, np.ndarray]:
    """The stored embeddings of the live faces among ``face_ids``."""
    found = cursor.execute("SELECT id, vector FROM faces WHERE gallery = %s AND id = ANY(%s)", (gid, list(face_ids)))
    return {face: rows.vector_of(raw) for face, raw in found}


def image_ids(cursor: psycopg.Cursor, gid: int) -> list[int]:
    return [row[0] for row in cursor.execute("SELECT id FROM images WHERE gallery = %s ORDER BY id", (gid,))]


class PostgresImages:
    def __init__(self, database: Database) -> None:
        self.db = database

    def gallery(self, gid: int) -> GalleryRecord:
        with self.db.transaction() as cursor:
            found = cursor.execute(f"SELECT {rows.GALLERY} FROM galleries WHERE id = %s", (gid,)).fetchone()
        if found is None:
            raise KeyError(gid)
        return rows.gallery(found)

    def galleries(self) -> dict[int, GalleryRecord]:
        with self.db.transaction() as cursor:
            found = cursor.execute(f"SELECT id, {rows.GALLERY} FROM galleries ORDER BY id").fetchall()
        return {row[0]: rows.gallery(row[1:]) for row in found}

    def add(self, gid: int, image: NewImage) -> ImageRecord:
        return self.add_many(gid, [image])[0]

    def add_many(self, gid: int, images: list[NewImage]) -> list[ImageRecord]:
        """Store the images; when the server went away during the commit, wait (a while) until it
        answers again and say what happened: stored, or not (StorageUnavailableError)."""
        made: list[ImageRecord] = []  # known even when the commit is in doubt
        try:
            with self.db.transaction() as cursor:
                gallery = locked_gallery(cursor, gid)
                made.extend(self._insert(cursor, gid, gallery, image) for image in images)
                store_gallery(cursor, gid, gallery)
        except CommitUnknownError:
            if not made:
                raise
            stored = self.db.resolve(lambda cursor: _stored(cursor, gid, made[0].id))
            if stored is None:
                raise
            if not stored:
                raise StorageUnavailableError(
                    "PostgreSQL went away during the commit; the image was not stored"
                ) from None
        return made

    def _insert(self, cursor: psycopg.Cursor, gid: int, gallery: GalleryRecord, image: NewImage) -> ImageRecord:
        dim = int(image.faces[0].embedding.shape[0])
        if gallery.pack is not None and (gallery.pack, gallery.dim) != (image.pack, dim):
            raise PackMismatchError(gallery.pack, image.pack)
        gallery.pack, gallery.dim = image.pack, dim
        (image_id,) = one(cursor.execute("SELECT nextval('image_ids')"))
        face_ids = [
            row[0]
            for row in cursor.execute(
                "SELECT nextval('face_ids') FROM generate_series(1, %s) ORDER BY 1", (len(image.faces),)
            )
        ]
        cursor.executemany(
            "INSERT INTO faces (gallery, id, image, pack, bbox, vector) VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (gid, f, image_id, image.pack, Json(face.bbox), rows.vector_bytes(face.embedding))
                for f, face in zip(face_ids, image.faces, strict=True)
            ],
        )
        log_changes(cursor, gid, gallery, ADD, face_ids)
        infos = [
            FaceInfo(id=f, bbox=face.bbox, score=face.score) for f, face in zip(face_ids, image.faces, strict=True)
        ]
        record = ImageRecord(
            image_id, gid, image.file, image.content_type, image.metadata, image.created_at, image.pack, infos,
            image.collection,
        )  # fmt: skip
        cursor.execute(rows.IMAGE_INSERT, rows.image_insert(record))
        index_image(cursor, gid, record)
        gallery.images += 1
        gallery.faces += len(face_ids)
        rules.added(PgRows(cursor, gid, gallery), image_id, list(zip(face_ids, image.faces, strict=True)))
        if image.source_digest is not None:
            cursor.execute(
                "INSERT INTO imported (gallery, digest, image) VALUES (%s, %s, %s) "
                "ON CONFLICT (gallery, digest) DO UPDATE SET image = excluded.image",
                (gid, image.source_digest, image_id),
            )
        return record

    def get(self, gid: int, image_id: int) -> ImageRecord | None:
        return self.get_many(gid, [image_id]).get(image_id)

    def get_many(self, gid: int, image_ids: list[int]) -> dict[int, ImageRecord]:
        if not image_ids:
            return {}
        with self.db.transaction() as cursor:
            found = cursor.execute(
                f"SELECT {rows.IMAGE} FROM images WHERE gallery = %s AND id = ANY(%s)", (gid, list(image_ids))
            ).fetchall()
        by_id = {row[0]: rows.image(row) for row in found}
        return {image_id: by_id[image_id] for image_id in image_ids if image_id in by_id}

    def page(self, gid: int, offset: int, limit: int, scope: Scope = EVERYTHING) -> tuple[list[ImageRecord], int]:
        if not scope.everything:
            with self.db.transaction(long=True, snapshot=True) as cursor:
                if cursor.execute("SELECT 1 FROM galleries WHERE id = %s", (gid,)).fetchone() is None:
                    raise KeyError(gid)
                ids = _selected(cursor, gid, scope, faces=False).ids()
                chosen = ids[offset : offset + limit].tolist()
                found = cursor.execute(f"SELECT {rows.IMAGE} FROM images WHERE id = ANY(%s)", (chosen,)).fetchall()
            by_id = {row[0]: rows.image(row) for row in found}
            return [by_id[image_id] for image_id in chosen], len(ids)
        with self.db.transaction() as cursor:
            total = cursor.execute("SELECT images FROM galleries WHERE id = %s", (gid,)).fetchone()
            if total is None:
                raise KeyError(gid)
            found = cursor.execute(
                f"SELECT {rows.IMAGE} FROM images WHERE gallery = %s ORDER BY id OFFSET %s LIMIT %s",
                (gid, offset, limit),
            ).fetchall()
        return [rows.image(row) for row in found], total[0]

    def ids(self, gid: int) -> list[int]:
        with self.db.transaction() as cursor:
            return image_ids(cursor, gid)

    def update(
        self, gid: int, image_id: int, metadata: dict[str, Any] | None = None, collection: str | None = None
    ) -> ImageRecord | None:
        """The change is logged for each of the image's faces (``UPDATE``), so that the vector
        backend rewrites the values it keeps beside their vectors."""
        with self.db.transaction() as cursor:
            gallery = locked_gallery(cursor, gid)
            found = cursor.execute(
                f"UPDATE images SET metadata = coalesce(%s, metadata), collection = coalesce(%s, collection) "
                f"WHERE gallery = %s AND id = %s RETURNING {rows.IMAGE}",
                (Json(metadata) if metadata is not None else None, collection, gid, image_id),
            ).fetchone()
            if found is None:
                return None
            record = rows.image(found)
            index_image(cursor, gid, record)
            log_changes(cursor, gid, gallery, UPDATE, [face.id for face in record.faces])
            store_gallery(cursor, gid, gallery)
        return record

    def collections(self, gid: int) -> dict[str, CollectionCount]:
        with self.db.transaction() as cursor:
            if cursor.execute("SELECT 1 FROM galleries WHERE id = %s", (gid,)).fetchone() is None:
                raise KeyError(gid)
            found = cursor.execute(
                "SELECT collection, count(*), sum(json_array_length(faces)) FROM images WHERE gallery = %s "
                "GROUP BY collection ORDER BY collection",
                (gid,),
            ).fetchall()
        return {name: CollectionCount(images, int(faces)) for name, images, faces in found}

    def delete_collection(self, gid: int, name: str, limit: int) -> list[ImageRecord]:
        with self.db.transaction() as cursor:
            chosen = [
                row[0]
                for row in cursor.execute(
                    "SELECT id FROM images WHERE gallery = %s AND collection = %s ORDER BY id LIMIT %s",
                    (gid, name, limit),
                )
            ]
        return self.delete(gid, chosen) if chosen else []

    def select(self, gid: int, scope: Scope) -> IdSet:
        with self.db.transaction(long=True, snapshot=True) as cursor:
            return _selected(cursor, gid, scope, faces=True)

    def count_upto(self, gid: int, scope: Scope, most: int) -> int:
        expr = scope.expr()
        if expr is None or not paths(expr) & {COLLECTION, CREATED}:
            return most
        _, (sql, params) = Compiler(gid, set()).compile(expr)  # metadata terms: "may pass", unread
        with self.db.transaction() as cursor:
            query = f"SELECT count(*) FROM (SELECT 1 FROM images i WHERE i.gallery = %s AND {sql} LIMIT %s) s"
            return int(one(cursor.execute(query, [gid, *params, most]))[0])

    def delete(self, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        with self.db.transaction() as cursor:
            gallery = locked_gallery(cursor, gid)
            deleted, _ = drop_faces(cursor, gid, gallery, dict.fromkeys(image_ids))
            if deleted:
                rules.deleted(PgRows(cursor, gid, gallery), [face.id for record in deleted for face in record.faces])
        return deleted

    def files(self) -> set[str]:
        with self.db.transaction(long=True) as cursor:
            return {row[0] for row in cursor.execute("SELECT file FROM images")}

    def images_of_faces(self, gid: int, face_ids: list[int]) -> dict[int, int]:
        if not face_ids:
            return {}
        with self.db.transaction() as cursor:
            found = cursor.execute(
                "SELECT id, image FROM faces WHERE gallery = %s AND id = ANY(%s)", (gid, list(face_ids))
            ).fetchall()
        return dict(found)

    def face_ids(self, gid: int) -> np.ndarray:
        with self.db.transaction() as cursor:
            found = cursor.execute("SELECT id FROM faces WHERE gallery = %s ORDER BY id", (gid,))
            return np.fromiter((face for (face,) in found), dtype=np.int64)

    def vectors(self, gid: int, face_ids: list[int]) -> dict[int, np.ndarray]:
        if not face_ids:
            return {}
        with self.db.transaction() as cursor:
            return face_vectors(cursor, gid, face_ids)

    def imported_as(self, gid: int, digest: bytes) -> int | None:
        with self.db.transaction() as cursor:
            found = cursor.execute(
                "SELECT image FROM imported WHERE gallery = %s AND digest = %s", (gid, digest)
            ).fetchone()
        return None if found is None else found[0]

    def mark_imported(self, gid: int, digest: bytes) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO imported (gallery, digest, image) VALUES (%s, %s, 0) "
                "ON CONFLICT (gallery, digest) DO UPDATE SET image = 0",
                (gid, digest),
            )


def _selected(cursor: psycopg.Cursor, gid: int, scope: Scope, faces: bool) -> IdSet:
    """The ids of the gallery's images in ``scope`` (or of their faces): those the SQL says pass
    for certain, and of those it says may pass, the ones whose metadata does."""
    expr = scope.expr()
    sure, possible = _compiled(cursor, gid, expr)
    if faces:
        found = cursor.execute(
            f"SELECT f.id FROM images i JOIN faces f ON f.gallery = i.gallery AND f.image = i.id "
            f"WHERE i.gallery = %s AND {sure[0]}",
            [gid, *sure[1]],
        )
    else:
        found = cursor.execute(f"SELECT i.id FROM images i WHERE i.gallery = %s AND {sure[0]}", [gid, *sure[1]])
    ids = [row[0] for row in found]
    if possible != sure:
        doubtful = cursor.execute(
            f"SELECT {', '.join('i.' + c for c in rows.IMAGE.split(', '))} FROM images i "
            f"WHERE i.gallery = %s AND {possible[0]} AND ({sure[0]}) IS NOT TRUE",
            [gid, *possible[1], *sure[1]],
        )
        for row in doubtful:
            record = rows.image(row)
            if matches(expr, Facts(record.metadata, record.collection, created_seconds(record.created_at))):
                ids.extend([face.id for face in record.faces] if faces else [record.id])
    return IdSet.of(ids)


def _compiled(cursor: psycopg.Cursor, gid: int, expr: Expr | None) -> tuple[Sql, Sql]:
    """A scope's tree as the SQL over ``images i`` of the images surely in it, and of those maybe in it."""
    if expr is None:
        return TRUE, TRUE
    ready = {path for path, upto in registry(cursor, gid).items() if upto is None}
    return Compiler(gid, ready).compile(expr)
