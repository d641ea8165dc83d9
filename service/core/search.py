"""Search a gallery with the faces of a query photo, one answer per stored image.

The query's largest face is the default; ``face: "all"`` searches with every face and
answers one list per face. Stored faces can be filtered by the size and detection score
they were stored with, for callers that want only faces good enough to trust a match on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from index.catalog import ImageTable
from index.filters import EVERYTHING, Facts, Scope, created_seconds, matches
from index.records import ImageRecord, KeyRecord
from index.vectors import VectorIndexes
from models.faces import Face
from models.packs import ModelPack

from .errors import NoFace
from .filters import FilterKeys
from .images import FaceReader, Names
from .requests import FaceFilter, Search
from .threshold import search_threshold
from .views import Image

NO_FILTER = FaceFilter()


@dataclass(frozen=True)
class Match:
    """A stored image that matched, with the score and id of its best-matching face."""

    image: Image
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


Hits = list[tuple[float, int]]  # (cosine, face id), best first


def nearest_groups(
    indexes: VectorIndexes,
    gid: int,
    query: np.ndarray,
    top_k: int,
    threshold: float,
    group_of: Callable[[list[int]], dict[int, int]],
    scope: Scope = EVERYTHING,
) -> list[tuple[int, Hits]]:
    """The groups (images, persons: ``group_of`` maps face ids to theirs, leaving out faces in
    none) of the faces at or above ``threshold`` nearest the query, each with its faces found,
    best group (by its best face) first; at least ``top_k`` groups when there are that many.

    Faces are fetched in growing rounds: a group with many faces near the query, or many faces
    in no group, could otherwise crowd the others out of a fixed-size list. ``scope``: the
    images searched (applied inside the vector index)."""
    k = top_k * 2 + 8
    while True:
        scores, face_ids = indexes.search(gid, query[None, :], k, scope)
        grouped = group_of([int(f) for f in face_ids[0] if f >= 0])
        found: dict[int, Hits] = {}
        for score, face_id in zip(scores[0], face_ids[0], strict=False):
            if face_id >= 0 and score >= threshold and int(face_id) in grouped:
                found.setdefault(grouped[int(face_id)], []).append((float(score), int(face_id)))
        exhausted = len(face_ids[0]) < k or (len(scores[0]) and scores[0][-1] < threshold)
        if len(found) >= top_k or exhausted:
            return sorted(found.items(), key=lambda item: -item[1][0][0])
        k *= 4


def admitted_faces(
    images: ImageTable,
    gid: int,
    face_to_image: dict[int, int],
    scope: Scope,
    records: dict[int, ImageRecord],
    faces: FaceFilter = NO_FILTER,
) -> set[int] | None:
    """The face ids among those found (``face_to_image``) whose image the catalog's record puts
    in ``scope`` and that the face filter admits, or None when nothing is filtered: the check of
    every hit of a scoped search (a vector server's copy may lag). The image records it reads
    are added to ``records``."""
    if not faces.active and scope.everything:
        return None
    wanted = set(face_to_image.values())
    records.update(images.get_many(gid, sorted(wanted - records.keys())))
    expr = scope.expr()
    passed = [
        records[image]
        for image in wanted
        if image in records
        and matches(expr, Facts(records[image].metadata, records[image].collection,
                                created_seconds(records[image].created_at)))
    ]  # fmt: skip
    return {face.id for record in passed for face in record.faces if faces.admits(face)}


class Thresholds:
    """The default search threshold of a gallery: the fixed setting, else its pack's, scaled
    with the gallery's size (``threshold``)."""

    def __init__(self, fixed: float | None) -> None:
        self.fixed = fixed

    def for_faces(self, pack: ModelPack, faces: int) -> float:
        return self.fixed if self.fixed is not None else search_threshold(pack, faces)


class Searcher:
    """``POST /search``: the query photo's faces against the key's gallery (its images in a
    scope: collections, a filter, creation times)."""

    def __init__(
        self,
        reader: FaceReader,
        images: ImageTable,
        indexes: VectorIndexes,
        thresholds: Thresholds,
        keys: FilterKeys,
        names: Names = lambda gid, faces: {},
    ) -> None:
        self.reader, self.images, self.indexes, self.thresholds = reader, images, indexes, thresholds
        self.keys, self.names = keys, names

    def default_threshold(self, gallery: int) -> float:
        record = self.images.gallery(gallery)
        return self.thresholds.for_faces(self.reader.pack_for(record.pack), record.faces)

    def best_per_image(
        self,
        key: KeyRecord,
        query: np.ndarray,
        top_k: int,
        threshold: float,
        faces: FaceFilter = NO_FILTER,
        scope: Scope = EVERYTHING,
    ) -> list[Match]:
        """The ``top_k`` images in ``scope`` with an admitted face at or above ``threshold``, best
        face per image. The vector index applies the scope inside its search; every hit is
        checked against the catalog's record all the same (a vector server's copy may lag)."""
        records: dict[int, ImageRecord] = {}  # decoded once, for the filter and for the answer

        def images_of(face_ids: list[int]) -> dict[int, int]:
            face_to_image = self.images.images_of_faces(key.gallery, face_ids)
            admitted = admitted_faces(self.images, key.gallery, face_to_image, scope, records, faces)
            return {f: image for f, image in face_to_image.items() if admitted is None or f in admitted}

        found = nearest_groups(self.indexes, key.gallery, query, top_k, threshold, images_of, scope)
        ranked = [(image_id, hits[0]) for image_id, hits in found[:top_k]]
        records.update(self.images.get_many(key.gallery, [i for i, _ in ranked if i not in records]))
        names = self.names(key.gallery, [face_id for _, (_, face_id) in ranked])
        return [
            Match(image=Image.of(records[image_id], names), score=round(score, 4), face_id=face_id)
            for image_id, (score, face_id) in ranked
            if image_id in records
        ]

    def query_faces(self, data: bytes, limit: int | None = None, pack: str | None = None) -> list[Face]:
        """The query photo's faces (the ``limit`` largest) in ``pack``'s vectors (the running
        pack's by default), largest first; NoFace when there is none."""
        faces = self.reader.faces_in(data, limit, pack)
        if not faces:
            raise NoFace("no face was found in the query image")
        return faces

    def search_faces(
        self,
        key: KeyRecord,
        faces: list[Face],
        top_k: int,
        threshold: float | None,
        stored: FaceFilter = NO_FILTER,
        scope: Scope = EVERYTHING,
    ) -> list[FaceMatches]:
        """One answer per already detected query face (in the gallery's pack's vectors), in the order given."""
        gallery = self.images.gallery(key.gallery)
        pack = self.reader.pack_for(gallery.pack)
        limit = self.thresholds.for_faces(pack, gallery.faces) if threshold is None else threshold
        self.keys.used(key.gallery, scope)
        return [
            FaceMatches(face, self.best_per_image(key, face.embedding, top_k, limit, stored, scope)) for face in faces
        ]

    def _query(self, key: KeyRecord, request: Search, limit: int | None) -> list[Face]:
        """The query's faces in the vectors of the gallery's pack (PackMismatch before any model runs)."""
        pack = self.reader.pack_for(self.images.gallery(key.gallery).pack)
        return self.query_faces(self.reader.photo_data(request.photo), limit, pack.name)

    def search(self, key: KeyRecord, request: Search) -> list[Match]:
        """Search with the query photo's largest face."""
        faces = self._query(key, request, limit=1)
        return self.search_faces(key, faces, request.top_k, request.threshold, request.stored, request.scope)[0].matches

    def search_each_face(self, key: KeyRecord, request: Search) -> list[FaceMatches]:
        """Search with every face of the query photo: one answer per face, largest first."""
        faces = self._query(key, request, limit=None)
        return self.search_faces(key, faces, request.top_k, request.threshold, request.stored, request.scope)
