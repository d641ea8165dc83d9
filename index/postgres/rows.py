"""How the catalog's records map onto rows: vectors as little-endian float32 bytes, face
lists and metadata as JSON (``json``, not ``jsonb``, so a client's key order is kept)."""

from __future__ import annotations

import numpy as np
from psycopg.types.json import Json

from ..filters import created_seconds
from ..records import FaceInfo, GalleryRecord, ImageRecord, KeyRecord

GALLERY = "key, pack, dim, seq, images, faces, index_generation"
KEY = "name, gallery, secret_hash, quota, revoked, created_at"
IMAGE = "id, gallery, file, content_type, metadata, created_at, pack, faces, collection"
# what an insert writes: the record, and its creation time as seconds for filters (``created``)
IMAGE_INSERT = f"INSERT INTO images ({IMAGE}, created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_of(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<f4")


def gallery(row: tuple) -> GalleryRecord:
    return GalleryRecord(*row)


def key(row: tuple) -> KeyRecord:
    return KeyRecord(*row)


def image(row: tuple) -> ImageRecord:
    image_id, gallery_id, file, content_type, metadata, created_at, pack, faces, collection = row
    return ImageRecord(
        image_id, gallery_id, file, content_type, metadata, created_at, pack, [FaceInfo(**face) for face in faces],
        collection,
    )  # fmt: skip


def image_insert(record: ImageRecord) -> tuple:
    """The parameters of ``IMAGE_INSERT`` for a record."""
    return (
        record.id, record.gallery, record.file, record.content_type, Json(record.metadata), record.created_at,
        record.pack, faces_json(record.faces), record.collection, created_seconds(record.created_at),
    )  # fmt: skip


def faces_json(faces: list[FaceInfo]) -> Json:
    return Json([{"id": f.id, "bbox": f.bbox, "score": f.score} for f in faces])
