"""Galleries, image records, face embeddings and bulk-import digests in LMDB."""

from __future__ import annotations

import lmdb
import numpy as np

from ..errors import PackMismatchError
from ..records import ADD, FaceInfo, GalleryRecord, ImageRecord, NewImage
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


class LmdbImages:
    def __init__(self, env: Environment) -> None:
        self.env = env

    def gallery(self, gid: int) -> GalleryRecord:
        return self.env.read(lambda txn: self.env.gallery(txn, gid))

    def galleries(self) -> dict[int, GalleryRecord]:
        def scan(txn: lmdb.Transaction) -> dict[int, GalleryRecord]:
            return {first_of(k): decode_gallery(v) for k, v in txn.cursor(db=self.env.db["galleries"])}

        return self.env.read(scan)

    def add(self, gid: int, image: NewImage) -> ImageRecord:
        def add(txn: lmdb.Transaction) -> ImageRecord:
            gallery = self.env.gallery(txn, gid)
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
                image_id, gid, image.file, image.content_type, image.metadata, image.created_at, image.pack, infos
            )
            txn.put(u64(image_id), encode(record), db=self.env.db["images"])
            txn.put(pair(gid, image_id), b"", db=self.env.db["gallery_images"])
            gallery.images += 1
            gallery.faces += len(image.faces)
            self.env.put_gallery(txn, gid, gallery)
            if image.source_digest is not None:
                txn.put(u64(gid) + image.source_digest, u64(image_id), db=self.env.db["imported"])
            return record

        return self.env.write(add)

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

    def page(self, gid: int, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
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

    def update_metadata(self, gid: int, image_id: int, metadata: dict) -> ImageRecord | None:
        def update(txn: lmdb.Transaction) -> ImageRecord | None:
            record = self.image(txn, gid, image_id)
            if record is not None:
                record.metadata = metadata
                txn.put(u64(image_id), encode(record), db=self.env.db["images"])
            return record

        return self.env.write(update)

    def delete(self, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        def delete(txn: lmdb.Transaction) -> list[ImageRecord]:
            gallery = self.env.gallery(txn, gid)
            deleted = []
            for image_id in dict.fromkeys(image_ids):
                record = self.image(txn, gid, image_id)
                if record is None:
                    continue
                for face in record.faces:
                    self.env.remove_face(txn, gid, gallery, face.id)
                txn.delete(u64(image_id), db=self.env.db["images"])
                txn.delete(pair(gid, image_id), db=self.env.db["gallery_images"])
                gallery.images -= 1
                deleted.append(record)
            if deleted:
                self.env.put_gallery(txn, gid, gallery)
            return deleted

        return self.env.write(delete)

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

        def walk(txn: lmdb.Transaction) -> np.ndarray:
            table = self.env.db["images"]
            records = (txn.get(u64(image_id), db=table) for image_id in self.ids_in(txn, gid))
            ids = [face for raw in records if raw is not None for face in decode_face_ids(raw, gid)]
            return np.sort(np.array(ids, np.int64))

        return self.env.read(walk)

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
