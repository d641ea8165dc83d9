"""Re-embedded vectors staged in LMDB beside the serving ones, and their atomic swap."""

from __future__ import annotations

import json

import lmdb
import numpy as np

import index.persons as rules

from ..errors import GenerationConflictError, StagingIncompleteError
from ..records import GalleryRecord, StagedSnapshot
from .attributes import Attributes
from .changes import LmdbChangeLog
from .encoding import decode_face, decode_image, decode_vector, dumps, encode, encode_face, pair, second_of, u64
from .environment import Environment
from .images import LmdbImages
from .persons import PersonWrite
from .removal import drop_faces


class LmdbStaging:
    def __init__(self, env: Environment, images: LmdbImages, log: LmdbChangeLog, attributes: Attributes) -> None:
        self.env, self.images, self.log, self.attributes = env, images, log, attributes

    def _staged_pack(self, txn: lmdb.Transaction, gid: int, image_id: int) -> str | None:
        entry = txn.get(pair(gid, image_id), db=self.env.db["staged_images"])
        return None if entry is None else json.loads(entry)["pack"]

    def _staged_face(self, txn: lmdb.Transaction, gid: int, face_id: int, pack: str) -> bytes | None:
        """A face's staged vector in ``pack`` (one left by an abandoned run for another pack is not)."""
        raw = txn.get(pair(gid, face_id), db=self.env.db["staged"])
        return raw if raw is not None and decode_face(raw).pack == pack else None

    def stage(self, gid: int, image_id: int, pack: str, vectors: dict[int, np.ndarray]) -> None:
        def stage(txn: lmdb.Transaction) -> None:
            for face_id, vector in vectors.items():
                txn.put(pair(gid, face_id), encode_face(image_id, pack, vector), db=self.env.db["staged"])
            entry = dumps({"pack": pack, "faces": sorted(vectors)})
            txn.put(pair(gid, image_id), entry, db=self.env.db["staged_images"])

        self.env.write(stage)

    def staged_images(self, gid: int, pack: str) -> set[int]:
        def scan(txn: lmdb.Transaction) -> set[int]:
            walked = self.env.walk(txn, "staged_images", u64(gid))
            return {second_of(key) for key, raw in walked if json.loads(raw)["pack"] == pack}

        return self.env.read(scan)

    def snapshot(self, gid: int, pack: str) -> StagedSnapshot:
        def scan(txn: lmdb.Transaction) -> StagedSnapshot:
            gallery = self.env.gallery(txn, gid)
            ids: list[int] = []
            vectors: list[np.ndarray] = []
            missing: list[int] = []
            for image_id in self.images.ids_in(txn, gid):
                if self._staged_pack(txn, gid, image_id) != pack:
                    missing.append(image_id)
                    continue
                for face in decode_image(txn.get(u64(image_id), db=self.env.db["images"])).faces:
                    staged = self._staged_face(txn, gid, face.id, pack)
                    if staged is not None:
                        ids.append(face.id)
                        vectors.append(decode_vector(staged))
            stacked = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
            return StagedSnapshot(gallery, np.array(ids, dtype=np.int64), stacked, missing)

        return self.env.read(scan)

    def swap(self, gid: int, pack: str, dim: int, since_seq: int, generation: int) -> GalleryRecord:
        def swap(txn: lmdb.Transaction) -> GalleryRecord:
            gallery = self.env.gallery(txn, gid)
            if gallery.index_generation != generation:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            if any(change.is_add for change in self.log.after(txn, gid, since_seq)):
                raise StagingIncompleteError(f"faces were added to gallery {gid} during the re-embedding")
            lost: dict[int, list[int]] = {}  # each image's faces the new models did not find
            for image_id in self.images.ids_in(txn, gid):
                if self._staged_pack(txn, gid, image_id) != pack:
                    raise StagingIncompleteError(f"image {image_id} of gallery {gid} is not re-embedded")
                record = decode_image(txn.get(u64(image_id), db=self.env.db["images"]))
                for face in record.faces:
                    raw = self._staged_face(txn, gid, face.id, pack)
                    if raw is None:
                        lost.setdefault(image_id, []).append(face.id)
                    else:
                        txn.put(pair(gid, face.id), raw, db=self.env.db["faces"])
                record.pack = pack
                txn.put(u64(image_id), encode(record), db=self.env.db["images"])
            drop_faces(self.env, txn, gid, lost, keep_empty=True)
            for table in ("staged", "staged_images"):
                self.env.clear(txn, table, u64(gid))
            gallery = self.env.gallery(txn, gid)  # as the faces dropped left it
            gallery.pack, gallery.dim = pack, dim
            gallery.index_generation += 1
            self.env.put_gallery(txn, gid, gallery)
            rules.deleted(PersonWrite(self.env, txn, gid), [face for faces in lost.values() for face in faces])
            return gallery

        return self.env.write(swap)
