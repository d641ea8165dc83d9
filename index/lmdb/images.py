"""Galleries, image records, face embeddings and bulk-import digests in LMDB, with the metadata
index (``attributes``) kept in step by every write."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import lmdb
import numpy as np

import index.persons as rules

from ..errors import PackMismatchError
from ..filters import EVERYTHING, Scope
from ..records import ADD, CollectionCount, FaceInfo, GalleryRecord, IdSet, ImageRecord, NewImage
from .attributes import FACES, IMAGES, Attributes
from .encoding import (
    decode_face,
    decode_face_ids,
    decode_gallery,
    decode_image,
    decode_vector,
    encode,
    encode_face,
    first_of,
    pair,
    second_of,
    u64,
)
from .environment import Environment
from .persons import PersonWrite
from .removal import drop_faces


class LmdbImages:
    def __init__(self, env: Environment, attributes: Attributes) -> None:
        self.env, self.attributes = env, attributes

    def gallery(self, gid: int) -> GalleryRecord:
        return self.env.read(lambda txn: self.env.gallery(txn, gid))

    def galleries(self) -> dict[int, GalleryRecord]:
        def scan(txn: lmdb.Transaction) -> dict[int, GalleryRecord]:
            return {first_of(k): decode_gallery(v) for k, v in txn.cursor(db=self.env.db["galleries"])}

        return self.env.read(scan)

    def add(self, gid: int, image: NewImage) -> ImageRecord:
        return self.add_many(gid, [image])[0]

    def add_many(self, gid: int, images: list[NewImage]) -> list[ImageRecord]:
        def add(txn: lmdb.Transaction) -> list[ImageRecord]:
            gallery = self.env.gallery(txn, gid)
            records = [self._insert(txn, gid, gallery, image) for image in images]
            self.attributes.added(txn, gid, records)
            self.env.put_gallery(txn, gid, gallery)
            return records

        return self.env.write(add)

    def _insert(self, txn: lmdb.Transaction, gid: int, gallery: GalleryRecord, image: NewImage) -> ImageRecord:
        dim = int(image.faces[0].embedding.shape[0])
        if gallery.pack is not None and (gallery.pack, gallery.dim) != (image.pack, dim):
            raise PackMismatchError(gallery.pack, image.pack)
        gallery.pack, gallery.dim = image.pack, dim
        image_id = self.env.next_id(txn, "next_image")
        first_face = self.env.next_id(txn, "next_face", len(image.faces))
        infos = []
        for offset, face in enumerate(image.faces):
            face_id = first_face + offset
            txn.put(pair(gid, face_id), encode_face(image_id, image.pack, face.embedding), db=self.env.db["faces"])
            self.env.log(txn, gid, gallery, ADD, face_id)
            infos.append(FaceInfo(id=face_id, bbox=face.bbox, score=face.score))
        record = ImageRecord(
            image_id, gid, image.file, image.content_type, image.metadata, image.created_at, image.pack, infos,
            image.collection,
        )  # fmt: skip
        txn.put(u64(image_id), encode(record), db=self.env.db["images"])
        new_faces = [(info.id, face) for info, face in zip(infos, image.faces, strict=True)]
        rules.added(PersonWrite(self.env, txn, gid), image_id, new_faces)
        txn.put(pair(gid, image_id), b"", db=self.env.db["gallery_images"])
        gallery.images += 1
        gallery.faces += len(image.faces)
        if image.source_digest is not None:
            txn.put(u64(gid) + image.source_digest, u64(image_id), db=self.env.db["imported"])
        return record

    def image(self, txn: lmdb.Transaction, gid: int, image_id: int) -> ImageRecord | None:
        """The image if it exists in this gallery: another key's image is as good as absent."""
        raw = txn.get(u64(image_id), db=self.env.db["images"])
        record = decode_image(raw) if raw is not None else None
        return record if record is not None and record.gallery == gid else None

    def get(self, gid: int, image_id: int) -> ImageRecord | None:
        return self.env.read(lambda txn: self.image(txn, gid, image_id))

    def get_many(self, gid: int, image_ids: list[int]) -> dict[int, ImageRecord]:
        def fetch(txn: lmdb.Transaction) -> dict[int, ImageRecord]:
            found = {image_id: self.image(txn, gid, image_id) for image_id in image_ids}
            return {image_id: record for image_id, record in found.items() if record is not None}

        return self.env.read(fetch)

    def page(self, gid: int, offset: int, limit: int, scope: Scope = EVERYTHING) -> tuple[list[ImageRecord], int]:
        if scope.everything:
            return self._page(gid, offset, limit)

        def page(txn: lmdb.Transaction) -> tuple[list[ImageRecord], int]:
            self.env.gallery(txn, gid)  # KeyError for an unknown gallery
            ids = self._select(txn, gid, scope, IMAGES).ids()
            chosen = ids[offset : offset + limit].tolist()
            return [decode_image(txn.get(u64(image_id), db=self.env.db["images"])) for image_id in chosen], len(ids)

        return self.env.read(page)

    def _page(self, gid: int, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        def page(txn: lmdb.Transaction) -> tuple[list[ImageRecord], int]:
            total = self.env.gallery(txn, gid).images
            records: list[ImageRecord] = []
            for index, (key, _) in enumerate(self.env.walk(txn, "gallery_images", u64(gid))):
                if len(records) >= limit:
                    break
                if index >= offset:
                    records.append(decode_image(txn.get(key[8:], db=self.env.db["images"])))
            return records, total

        return self.env.read(page)

    def ids_in(self, txn: lmdb.Transaction, gid: int) -> list[int]:
        return [second_of(key) for key, _ in self.env.walk(txn, "gallery_images", u64(gid))]

    def ids(self, gid: int) -> list[int]:
        return self.env.read(lambda txn: self.ids_in(txn, gid))

    def update(
        self, gid: int, image_id: int, metadata: dict[str, Any] | None = None, collection: str | None = None
    ) -> ImageRecord | None:
        def update(txn: lmdb.Transaction) -> ImageRecord | None:
            record = self.image(txn, gid, image_id)
            if record is not None:
                before = copy.deepcopy(record)
                record.metadata = metadata if metadata is not None else record.metadata
                record.collection = collection if collection is not None else record.collection
                txn.put(u64(image_id), encode(record), db=self.env.db["images"])
                self.attributes.changed(txn, gid, before, record)
            return record

        return self.env.write(update)

    def delete(self, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        return self.env.write(lambda txn: self._delete(txn, gid, image_ids))

    def _delete(self, txn: lmdb.Transaction, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        deleted, _ = drop_faces(self.env, txn, gid, dict.fromkeys(image_ids))
        if deleted:
            rules.deleted(PersonWrite(self.env, txn, gid), [face.id for record in deleted for face in record.faces])
        return deleted

    def delete_collection(self, gid: int, name: str, limit: int) -> list[ImageRecord]:
        """Up to ``limit`` images of the collection deleted in one write (the lowest ids first)."""

        def delete(txn: lmdb.Transaction) -> list[ImageRecord]:
            chosen = self._select(txn, gid, Scope(collections=(name,)), IMAGES).ids()[:limit]
            return self._delete(txn, gid, chosen.tolist())

        return self.env.write(delete)

    def collections(self, gid: int) -> dict[str, CollectionCount]:
        def count(txn: lmdb.Transaction) -> dict[str, CollectionCount]:
            self.env.gallery(txn, gid)
            indexed = self.attributes.collections(txn, gid)
            if indexed is not None:
                return indexed
            tally: dict[str, tuple[int, int]] = {}  # not indexed yet: every record is read
            for record in self._records(txn, gid, IdSet.of(self.ids_in(txn, gid))):
                images, faces = tally.get(record.collection, (0, 0))
                tally[record.collection] = (images + 1, faces + len(record.faces))
            return {name: CollectionCount(*counts) for name, counts in sorted(tally.items())}

        return self.env.read(count)

    def select(self, gid: int, scope: Scope) -> IdSet:
        """The live faces of the images in ``scope``."""
        return self.env.read(lambda txn: self._select(txn, gid, scope, FACES))

    def _select(self, txn: lmdb.Transaction, gid: int, scope: Scope, level: bytes) -> IdSet:
        expr = scope.expr()
        if expr is None:
            everything = self.ids_in(txn, gid) if level == IMAGES else self._face_ids(txn, gid).tolist()
            return IdSet.of(everything)
        return self.attributes.select(txn, gid, expr, level, lambda ids: self._records(txn, gid, ids))

    def _records(self, txn: lmdb.Transaction, gid: int, ids: IdSet) -> Iterator[ImageRecord]:
        table = self.env.db["images"]
        for image_id in ids.ids().tolist():
            raw = txn.get(u64(image_id), db=table)
            if raw is not None:
                record = decode_image(raw)
                if record.gallery == gid:
                    yield record

    def files(self) -> set[str]:
        def scan(txn: lmdb.Transaction) -> set[str]:
            return {decode_image(raw).file for _, raw in txn.cursor(db=self.env.db["images"])}

        return self.env.read(scan)

    def images_of_faces(self, gid: int, face_ids: list[int]) -> dict[int, int]:
        def fetch(txn: lmdb.Transaction) -> dict[int, int]:
            found = {face_id: txn.get(pair(gid, face_id), db=self.env.db["faces"]) for face_id in face_ids}
            return {face_id: decode_face(raw).image for face_id, raw in found.items() if raw is not None}

        return self.env.read(fetch)

    def face_ids(self, gid: int) -> np.ndarray:
        """Every live face id of the gallery, ascending, read from its image records: walking even
        the keys of the faces table reads their vectors too (py-lmdb touches each value's pages
        before it hands over the key), the whole catalog at ten million faces."""

        return self.env.read(lambda txn: self._face_ids(txn, gid))

    def _face_ids(self, txn: lmdb.Transaction, gid: int) -> np.ndarray:
        table = self.env.db["images"]
        records = (txn.get(u64(image_id), db=table) for image_id in self.ids_in(txn, gid))
        ids = [face for raw in records if raw is not None for face in decode_face_ids(raw, gid)]
        return np.sort(np.array(ids, np.int64))

    def vectors(self, gid: int, face_ids: list[int]) -> dict[int, np.ndarray]:
        def fetch(txn: lmdb.Transaction, part: list[int]) -> dict[int, np.ndarray]:
            found = {face_id: txn.get(pair(gid, face_id), db=self.env.db["faces"]) for face_id in part}
            return {face_id: decode_vector(raw) for face_id, raw in found.items() if raw is not None}

        return self.env.read_spread(fetch, face_ids)

    def imported_as(self, gid: int, digest: bytes) -> int | None:
        raw = self.env.read(lambda txn: txn.get(u64(gid) + digest, db=self.env.db["imported"]))
        return None if raw is None else int.from_bytes(raw, "big")

    def mark_imported(self, gid: int, digest: bytes) -> None:
        self.env.write(lambda txn: txn.put(u64(gid) + digest, u64(0), db=self.env.db["imported"]))
