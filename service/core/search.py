"""Search a gallery with the faces of a query photo, one answer per stored image.

The query's largest face is the default; ``face: "all"`` searches with every face and
answers one list per face. Stored faces can be filtered by the size and detection score
they were stored with, for callers that want only faces good enough to trust a match on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.records import ImageRecord, KeyRecord
from models.faces import Face

from .errors import NoFace
from .images import detect_faces, gallery_pack, photo_data
from .requests import FaceFilter, Search
from .services import Services

NO_FILTER = FaceFilter()


@dataclass(frozen=True)
class Match:
    """A stored image that matched, with the score and id of its best-matching face."""

    image: ImageRecord
    score: float
    face_id: int

    @property
    def bbox(self) -> list[float]:
        return self.image.face(self.face_id).bbox


@dataclass(frozen=True)
class FaceMatches:
    """The answer for one face of the query photo."""

    face: Face
    matches: list[Match]


def best_per_image(
    services: Services,
    key: KeyRecord,
    query: np.ndarray,
    top_k: int,
    threshold: float,
    faces: FaceFilter = NO_FILTER,
) -> list[Match]:
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
    records.update(services.catalog.images.get_many(key.gallery, [i for i, _ in ranked if i not in records]))
    return [
        Match(image=records[image_id], score=round(score, 4), face_id=face_id)
        for image_id, (score, face_id) in ranked
        if image_id in records
    ]


def _images_of(services: Services, key: KeyRecord, face_ids: np.ndarray) -> dict[int, int]:
    return services.catalog.images.images_of_faces(key.gallery, [int(f) for f in face_ids if f >= 0])


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
    records.update(services.catalog.images.get_many(key.gallery, sorted(wanted - records.keys())))
    return {face.id for image in wanted if image in records for face in records[image].faces if faces.admits(face)}


def query_faces(services: Services, data: bytes, pack: str, limit: int | None = None) -> list[Face]:
    """The query photo's faces (the ``limit`` largest) in ``pack``'s vectors, largest first;
    NoFace when there is none."""
    faces = detect_faces(services, data, limit, pack)
    if not faces:
        raise NoFace("no face was found in the query image")
    return faces


def search_faces(
    services: Services,
    key: KeyRecord,
    faces: list[Face],
    top_k: int,
    threshold: float | None,
    stored: FaceFilter = NO_FILTER,
) -> list[FaceMatches]:
    """One answer per already detected query face (in the gallery's pack's vectors), in the order given."""
    gallery = services.catalog.images.gallery(key.gallery)
    limit = services.threshold_for(services.pack_for(gallery.pack), gallery.faces) if threshold is None else threshold
    return [FaceMatches(face, best_per_image(services, key, face.embedding, top_k, limit, stored)) for face in faces]


def _query(services: Services, key: KeyRecord, request: Search, limit: int | None) -> list[Face]:
    """The query's faces in the vectors of the gallery's pack (PackMismatch before any model runs)."""
    pack = gallery_pack(services, key)
    return query_faces(services, photo_data(services, request.photo), pack.name, limit)


def search(services: Services, key: KeyRecord, request: Search) -> list[Match]:
    """Search with the query photo's largest face."""
    faces = _query(services, key, request, limit=1)
    return search_faces(services, key, faces, request.top_k, request.threshold, request.stored)[0].matches


def search_each_face(services: Services, key: KeyRecord, request: Search) -> list[FaceMatches]:
    """Search with every face of the query photo: one answer per face, largest first."""
    faces = _query(services, key, request, limit=None)
    return search_faces(services, key, faces, request.top_k, request.threshold, request.stored)
