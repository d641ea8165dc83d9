"""Search a gallery with the faces of a query photo, one answer per stored image.

The query's largest face is the default; ``face: "all"`` searches with every face and
answers one list per face. Stored faces can be filtered by the size and detection score
they were stored with, for callers that want only faces good enough to trust a match on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.records import FaceInfo, ImageRecord, KeyRecord
from models.faces import Face

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


@dataclass(frozen=True)
class FaceFilter:
    """Which stored faces may answer: at least this size (shorter box side, pixels) and score."""

    min_face_size: float = 0.0
    min_det_score: float = 0.0

    @property
    def active(self) -> bool:
        return self.min_face_size > 0 or self.min_det_score > 0

    def admits(self, face: FaceInfo) -> bool:
        x1, y1, x2, y2 = face.bbox
        return min(x2 - x1, y2 - y1) >= self.min_face_size and face.score >= self.min_det_score


NO_FILTER = FaceFilter()


@dataclass(frozen=True)
class FaceHits:
    """The answer for one face of the query photo."""

    face: Face
    hits: list[Hit]


def best_per_image(
    services: Services,
    key: KeyRecord,
    query: np.ndarray,
    top_k: int,
    threshold: float,
    faces: FaceFilter = NO_FILTER,
) -> list[Hit]:
    """The ``top_k`` images with an admitted face at or above ``threshold``, best face per image.

    Faces are fetched in growing rounds: an image with many faces near the query, or many
    faces the filter refuses, could otherwise crowd the others out of a fixed-size list.
    """
    k = top_k * 2 + 8
    records: dict[int, ImageRecord] = {}  # decoded once, for the filter and for the answer
    while True:
        scores, face_ids = services.indexes.search(key.gallery, query[None, :], k)
        best: dict[int, tuple[float, int]] = {}
        face_to_image = _images_of(services, key, face_ids[0])
        admitted = _admitted(services, key, face_to_image, faces, records)
        for score, face_id in zip(scores[0], face_ids[0], strict=False):
            if face_id < 0 or score < threshold or face_id not in face_to_image:
                continue
            if admitted is not None and face_id not in admitted:
                continue
            image_id = face_to_image[face_id]
            if image_id not in best:
                best[image_id] = (float(score), int(face_id))
        exhausted = len(face_ids[0]) < k or (len(scores[0]) and scores[0][-1] < threshold)
        if len(best) >= top_k or exhausted:
            break
        k *= 4
    ranked = sorted(best.items(), key=lambda item: -item[1][0])[:top_k]
    records.update(services.store.get_images(key.gallery, [i for i, _ in ranked if i not in records]))
    return [
        Hit(image=records[image_id], score=round(score, 4), face_id=face_id)
        for image_id, (score, face_id) in ranked
        if image_id in records
    ]


def _images_of(services: Services, key: KeyRecord, face_ids: np.ndarray) -> dict[int, int]:
    return services.store.images_of_faces(key.gallery, [int(f) for f in face_ids if f >= 0])


def _admitted(
    services: Services,
    key: KeyRecord,
    face_to_image: dict[int, int],
    faces: FaceFilter,
    records: dict[int, ImageRecord],
) -> set[int] | None:
    """The face ids the filter lets answer among those found, or None when nothing is filtered.

    The image records it reads are added to ``records``.
    """
    if not faces.active:
        return None
    wanted = set(face_to_image.values())
    records.update(services.store.get_images(key.gallery, sorted(wanted - records.keys())))
    return {face.id for image in wanted if image in records for face in records[image].faces if faces.admits(face)}


def query_faces(services: Services, data: bytes, limit: int | None = None) -> list[Face]:
    """The query photo's faces (the ``limit`` largest), largest first; code 3 when there is none."""
    faces = detect_faces(services, data, limit)
    if not faces:
        raise ApiError(Code.NO_FACE, "no face was found in the query image")
    return faces


def search_faces(
    services: Services,
    key: KeyRecord,
    faces: list[Face],
    top_k: int,
    threshold: float | None,
    stored: FaceFilter = NO_FILTER,
) -> list[FaceHits]:
    """One answer per already detected query face, in the order given."""
    gallery = services.store.gallery(key.gallery)
    if gallery.pack is not None and gallery.pack != services.pack.name:
        raise ApiError(Code.PACK_MISMATCH, f"this gallery was embedded with model pack {gallery.pack!r}")
    limit = services.threshold_for(gallery.faces) if threshold is None else threshold
    return [FaceHits(face, best_per_image(services, key, face.embedding, top_k, limit, stored)) for face in faces]


def search(
    services: Services,
    key: KeyRecord,
    data: bytes,
    top_k: int,
    threshold: float | None,
    stored: FaceFilter = NO_FILTER,
) -> list[Hit]:
    """Search with the query photo's largest face."""
    return search_faces(services, key, query_faces(services, data, limit=1), top_k, threshold, stored)[0].hits
