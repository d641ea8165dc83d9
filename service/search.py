"""Search a gallery with the largest face of a query photo, one answer per stored image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.records import ImageRecord, KeyRecord

from .context import Services
from .errors import ApiError, Code
from .images import detect_faces


@dataclass(frozen=True)
class Hit:
    image: ImageRecord
    score: float
    face_id: int

    @property
    def bbox(self) -> list[float]:
        return next(face.bbox for face in self.image.faces if face.id == self.face_id)


def best_per_image(services: Services, key: KeyRecord, query: np.ndarray, top_k: int, threshold: float) -> list[Hit]:
    """The ``top_k`` images with a face at or above ``threshold``, best face per image.

    Faces are fetched in growing rounds: an image with many faces near the query could
    otherwise crowd the others out of a fixed-size face list.
    """
    gallery = services.store.gallery(key.gallery)
    if gallery.pack is not None and gallery.pack != services.pack.name:
        raise ApiError(Code.PACK_MISMATCH, f"this gallery was embedded with model pack {gallery.pack!r}")
    k = top_k * 2 + 8
    while True:
        scores, face_ids = services.indexes.search(key.gallery, query[None, :], k)
        best: dict[int, tuple[float, int]] = {}
        face_to_image = _images_of(services, key, face_ids[0])
        for score, face_id in zip(scores[0], face_ids[0], strict=False):
            if face_id < 0 or score < threshold or face_id not in face_to_image:
                continue
            image_id = face_to_image[face_id]
            if image_id not in best:
                best[image_id] = (float(score), int(face_id))
        exhausted = len(face_ids[0]) < k or (len(scores[0]) and scores[0][-1] < threshold)
        if len(best) >= top_k or exhausted:
            break
        k *= 4
    ranked = sorted(best.items(), key=lambda item: -item[1][0])[:top_k]
    records = services.store.get_images(key.gallery, [image_id for image_id, _ in ranked])
    return [
        Hit(image=records[image_id], score=round(score, 4), face_id=face_id)
        for image_id, (score, face_id) in ranked
        if image_id in records
    ]


def _images_of(services: Services, key: KeyRecord, face_ids: np.ndarray) -> dict[int, int]:
    return services.store.images_of_faces(key.gallery, [int(f) for f in face_ids if f >= 0])


def search(services: Services, key: KeyRecord, data: bytes, top_k: int, threshold: float | None) -> list[Hit]:
    faces = detect_faces(services, data)
    if not faces:
        raise ApiError(Code.NO_FACE, "no face was found in the query image")
    limit = services.default_threshold if threshold is None else threshold
    return best_per_image(services, key, faces[0].embedding, top_k, limit)
