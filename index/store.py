"""The LMDB store: keys, galleries, image records, face embeddings and the change log.

LMDB is the source of truth. Every write is one transaction committed with fsync, so
what a caller was told is stored survives a crash, and what it was not told is absent
as a whole. Each gallery's change log (face added, face removed, numbered by the
gallery's sequence) lets any process bring an in-memory FAISS index up to date by
replaying what it has not seen, whoever made the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lmdb
import numpy as np

from .locks import ReadWriteLock
from .records import (
    ADD,
    REMOVE,
    FaceInfo,
    GalleryRecord,
    ImageRecord,
    KeyRecord,
    NewFace,
    decode_change,
    decode_face,
    dumps,
    encode_change,
    encode_face,
    pair,
    second_of,
    u64,
)

T = TypeVar("T")
_DATABASES = (
    "meta",
    "keys",
    "usage",
    "galleries",
    "images",
    "gallery_images",
    "faces",
    "changes",
    "imported",  # (gallery, content hash) -> image id (0: no face), for resumable bulk imports
    "staged",  # (gallery, face) -> a re-embedded face waiting for the swap
    "staged_images",  # (gallery, image) -> {"pack", "faces"}: which faces were re-embedded
)


class StorageError(OSError):
    """The store could not write (disk full, I/O error); nothing of the transaction was kept."""


class PackMismatchError(ValueError):
    """A gallery holds embeddings of one pack; vectors of another cannot be compared with them."""

    def __init__(self, gallery_pack: str, pack: str) -> None:
        super().__init__(
            f"this gallery was embedded with model pack {gallery_pack!r} but the service runs "
            f"{pack!r}; embeddings of different packs cannot be compared: run the service with "
            f"FACE_SEARCH_MODELS={gallery_pack}, or re-embed the gallery with scripts/reembed.py"
        )


class GenerationConflictError(RuntimeError):
    """Another rebuild replaced the gallery's index first; this one is stale."""


class StagingIncompleteError(RuntimeError):
    """Faces were added while a re-embedding ran: they must be re-embedded before the swap."""


@dataclass(frozen=True)
class Change:
    seq: int
    op: bytes
    face: int

    @property
    def is_add(self) -> bool:
        return self.op == ADD


class Store:
    def __init__(self, path: Path, map_size: int = 1 << 30) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=map_size, max_dbs=len(_DATABASES), max_readers=512, sync=True)
        self.db = {name: self.env.open_db(name.encode()) for name in _DATABASES}
        self._resize = ReadWriteLock()

    def close(self) -> None:
        self.env.close()

    # -- transactions -------------------------------------------------------------

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self._resize.read(), self.env.begin() as txn:
            return fn(txn)

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one durable write transaction, growing the map when it is full."""
        while True:
            try:
                with self._resize.read(), self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                with self._resize.write():
                    self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as exc:  # disk full or failing: the transaction was aborted whole
                raise StorageError(f"LMDB write failed: {exc}") from exc

    def _next(self, txn: lmdb.Transaction, counter: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive ids from a persistent counter; returns the first."""
        key = counter.encode()
        raw = txn.get(key, db=self.db["meta"])
        first = int(raw) if raw else 1
        txn.put(key, str(first + count).encode(), db=self.db["meta"])
        return first

    # -- keys ---------------------------------------------------------------------

    def get_key(self, name: str) -> KeyRecord | None:
        raw = self.read(lambda txn: txn.get(name.encode(), db=self.db["keys"]))
        return KeyRecord.decode(raw) if raw else None

    def create_key(self, name: str, secret_hash: str, quota: int | None, created_at: str) -> KeyRecord:
        def create(txn: lmdb.Transaction) -> KeyRecord:
            if txn.get(name.encode(), db=self.db["keys"]):
                raise KeyError(name)
            gallery = self._next(txn, "next_gallery")
            record = KeyRecord(name, gallery, secret_hash, quota, False, created_at)
            txn.put(name.encode(), record.encode(), db=self.db["keys"])
            txn.put(u64(gallery), GalleryRecord(key=name).encode(), db=self.db["galleries"])
            return record

        return self.write(create)

    def update_key(self, name: str, change: Callable[[KeyRecord], None]) -> KeyRecord | None:
        def update(txn: lmdb.Transaction) -> KeyRecord | None:
            raw = txn.get(name.encode(), db=self.db["keys"])
            if raw is None:
                return None
            record = KeyRecord.decode(raw)
            change(record)
            txn.put(name.encode(), record.encode(), db=self.db["keys"])
            return record

        return self.write(update)

    def list_keys(self) -> list[tuple[KeyRecord, int]]:
        """Every key with the number of requests it has made."""

        def scan(txn: lmdb.Transaction) -> list[tuple[KeyRecord, int]]:
            usage = self.db["usage"]
            return [
                (KeyRecord.decode(raw), int(txn.get(name, b"0", db=usage)))
                for name, raw in txn.cursor(db=self.db["keys"])
            ]

        return self.read(scan)

    def count_request(self, name: str, quota: int | None) -> bool:
        """Count one request against the key; False, and nothing counted, once the quota is spent."""

        def count(txn: lmdb.Transaction) -> bool:
            used = int(txn.get(name.encode(), b"0", db=self.db["usage"]))
            if quota is not None and used >= quota:
                return False
            txn.put(name.encode(), str(used + 1).encode(), db=self.db["usage"])
            return True

        return self.write(count)

    def reset_usage(self, name: str) -> None:
        self.write(lambda txn: txn.delete(name.encode(), db=self.db["usage"]))

    # -- galleries ----------------------------------------------------------------

    def gallery(self, gallery: int) -> GalleryRecord:
        raw = self.read(lambda txn: txn.get(u64(gallery), db=self.db["galleries"]))
        if raw is None:
            raise KeyError(gallery)
        return GalleryRecord.decode(raw)

    def galleries(self) -> dict[int, GalleryRecord]:
        def scan(txn: lmdb.Transaction) -> dict[int, GalleryRecord]:
            cursor = txn.cursor(db=self.db["galleries"])
            return {int.from_bytes(k, "big"): GalleryRecord.decode(v) for k, v in cursor}

        return self.read(scan)

    def _log(self, txn: lmdb.Transaction, gallery: GalleryRecord, gid: int, op: bytes, face: int) -> None:
        gallery.seq += 1
        txn.put(pair(gid, gallery.seq), encode_change(op, face), db=self.db["changes"])

    # -- images -------------------------------------------------------------------

    def add_image(
        self,
        gid: int,
        file: str,
        content_type: str,
        metadata: dict,
        created_at: str,
        pack: str,
        faces: list[NewFace],
        source_digest: bytes | None = None,
    ) -> ImageRecord:
        """Store an image record with all its faces and log them, atomically.

        ``source_digest`` (a bulk import's content hash) is recorded in the same transaction,
        so an import killed at any point neither loses nor repeats a photo when resumed.
        """

        def add(txn: lmdb.Transaction) -> ImageRecord:
            gallery = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"]))
            dim = int(faces[0].embedding.shape[0])
            if gallery.pack is not None and (gallery.pack, gallery.dim) != (pack, dim):
                raise PackMismatchError(gallery.pack, pack)
            gallery.pack, gallery.dim = pack, dim
            image_id = self._next(txn, "next_image")
            first_face = self._next(txn, "next_face", len(faces))
            infos = []
            for offset, face in enumerate(faces):
                face_id = first_face + offset
                txn.put(pair(gid, face_id), encode_face(image_id, pack, face.embedding), db=self.db["faces"])
                self._log(txn, gallery, gid, ADD, face_id)
                infos.append(FaceInfo(id=face_id, bbox=face.bbox, score=face.score))
            record = ImageRecord(image_id, gid, file, content_type, metadata, created_at, pack, infos)
            txn.put(u64(image_id), record.encode(), db=self.db["images"])
            txn.put(pair(gid, image_id), b"", db=self.db["gallery_images"])
            gallery.images += 1
            gallery.faces += len(faces)
            txn.put(u64(gid), gallery.encode(), db=self.db["galleries"])
            if source_digest is not None:
                txn.put(u64(gid) + source_digest, u64(image_id), db=self.db["imported"])
            return record

        return self.write(add)

    def imported_as(self, gid: int, digest: bytes) -> int | None:
        """The image a bulk import made from this content (0: it had no face), None if unseen."""
        raw = self.read(lambda txn: txn.get(u64(gid) + digest, db=self.db["imported"]))
        return None if raw is None else int.from_bytes(raw, "big")

    def mark_imported(self, gid: int, digest: bytes) -> None:
        """Remember a photo a bulk import found no face in, so a resumed import skips it."""
        self.write(lambda txn: txn.put(u64(gid) + digest, u64(0), db=self.db["imported"]))

    def get_image(self, gid: int, image_id: int) -> ImageRecord | None:
        """The image if it exists in this gallery: another key's image is as good as absent."""
        raw = self.read(lambda txn: txn.get(u64(image_id), db=self.db["images"]))
        if raw is None:
            return None
        record = ImageRecord.decode(raw)
        return record if record.gallery == gid else None

    def get_images(self, gid: int, image_ids: list[int]) -> dict[int, ImageRecord]:
        def fetch(txn: lmdb.Transaction) -> dict[int, ImageRecord]:
            found = {}
            for image_id in image_ids:
                raw = txn.get(u64(image_id), db=self.db["images"])
                if raw is not None:
                    record = ImageRecord.decode(raw)
                    if record.gallery == gid:
                        found[image_id] = record
            return found

        return self.read(fetch)

    def list_images(self, gid: int, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
        """One page of the gallery in ascending id order, and the gallery's total."""

        def page(txn: lmdb.Transaction) -> tuple[list[ImageRecord], int]:
            total = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"])).images
            cursor = txn.cursor(db=self.db["gallery_images"])
            records: list[ImageRecord] = []
            if not cursor.set_range(u64(gid)):
                return records, total
            for index, key in enumerate(cursor.iternext(values=False)):
                if key[:8] != u64(gid) or len(records) >= limit:
                    break
                if index >= offset:
                    raw = txn.get(key[8:], db=self.db["images"])
                    records.append(ImageRecord.decode(raw))
            return records, total

        return self.read(page)

    def update_metadata(self, gid: int, image_id: int, metadata: dict) -> ImageRecord | None:
        def update(txn: lmdb.Transaction) -> ImageRecord | None:
            raw = txn.get(u64(image_id), db=self.db["images"])
            record = ImageRecord.decode(raw) if raw else None
            if record is None or record.gallery != gid:
                return None
            record.metadata = metadata
            txn.put(u64(image_id), record.encode(), db=self.db["images"])
            return record

        return self.write(update)

    def delete_images(self, gid: int, image_ids: list[int]) -> list[ImageRecord]:
        """Delete this gallery's images among ``image_ids`` with their faces; returns those deleted."""

        def delete(txn: lmdb.Transaction) -> list[ImageRecord]:
            gallery = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"]))
            deleted = []
            for image_id in dict.fromkeys(image_ids):
                raw = txn.get(u64(image_id), db=self.db["images"])
                record = ImageRecord.decode(raw) if raw else None
                if record is None or record.gallery != gid:
                    continue
                for face in record.faces:
                    txn.delete(pair(gid, face.id), db=self.db["faces"])
                    self._log(txn, gallery, gid, REMOVE, face.id)
                txn.delete(u64(image_id), db=self.db["images"])
                txn.delete(pair(gid, image_id), db=self.db["gallery_images"])
                gallery.images -= 1
                gallery.faces -= len(record.faces)
                deleted.append(record)
            if deleted:
                txn.put(u64(gid), gallery.encode(), db=self.db["galleries"])
            return deleted

        return self.write(delete)

    def image_files(self) -> set[str]:
        """The photo file of every image, to tell orphans left by a crash from live files."""

        def scan(txn: lmdb.Transaction) -> set[str]:
            return {ImageRecord.decode(raw).file for _, raw in txn.cursor(db=self.db["images"])}

        return self.read(scan)

    def images_of_faces(self, gid: int, face_ids: list[int]) -> dict[int, int]:
        """Face id to image id for the live faces among ``face_ids``."""

        def fetch(txn: lmdb.Transaction) -> dict[int, int]:
            found = {}
            for face_id in face_ids:
                raw = txn.get(pair(gid, face_id), db=self.db["faces"])
                if raw is not None:
                    found[face_id] = decode_face(raw).image
            return found

        return self.read(fetch)

    # -- vectors and the change log --------------------------------------------------

    def _changes_after(self, txn: lmdb.Transaction, gid: int, seq: int) -> Iterator[Change]:
        """The gallery's logged changes after ``seq``, in order."""
        cursor = txn.cursor(db=self.db["changes"])
        if cursor.set_range(pair(gid, seq + 1)):
            for key, raw in cursor:
                if key[:8] != u64(gid):
                    break
                op, face = decode_change(raw)
                yield Change(second_of(key), op, face)

    def changes_since(self, gid: int, seq: int) -> tuple[list[Change], dict[int, np.ndarray], int | None]:
        """Changes after ``seq``, the vectors of faces added and still live, and the log's first seq.

        A first seq above ``seq + 1`` means the log was trimmed past what the caller has seen,
        so it must reload the gallery from its faces instead of replaying.
        """

        def scan(txn: lmdb.Transaction) -> tuple[list[Change], dict[int, np.ndarray], int | None]:
            cursor = txn.cursor(db=self.db["changes"])
            first = None
            if cursor.set_range(u64(gid)) and cursor.key()[:8] == u64(gid):
                first = second_of(cursor.key())
            changes = list(self._changes_after(txn, gid, seq))
            vectors: dict[int, np.ndarray] = {}
            for change in changes:
                found = txn.get(pair(gid, change.face), db=self.db["faces"]) if change.is_add else None
                if found is not None:
                    vectors[change.face] = decode_face(found).vector
            return changes, vectors, first

        return self.read(scan)

    def trim_log(self, gid: int, upto: int) -> None:
        """Drop log entries up to ``upto``: an index saved at that seq already holds them."""

        def trim(txn: lmdb.Transaction) -> None:
            cursor = txn.cursor(db=self.db["changes"])
            if not cursor.set_range(u64(gid)):
                return
            while cursor.key()[:8] == u64(gid) and second_of(cursor.key()) <= upto:
                if not cursor.delete():
                    break

        self.write(trim)

    def log_counts(self, gid: int, seq: int) -> tuple[int, int]:
        """(adds, removes) logged after ``seq``: what an index saved at ``seq`` has not seen."""

        def scan(txn: lmdb.Transaction) -> tuple[int, int]:
            changes = list(self._changes_after(txn, gid, seq))
            adds = sum(change.is_add for change in changes)
            return adds, len(changes) - adds

        return self.read(scan)

    # -- index generations -------------------------------------------------------------

    def snapshot(self, gid: int) -> tuple[GalleryRecord, np.ndarray, np.ndarray]:
        """Every live face of a gallery, read in one transaction with the record it matches.

        The record's seq says which changes the vectors include, so an index built from them
        can be brought up to date by replaying the log from there. Vectors land in one
        preallocated array: a million faces cost their 2 GB once, not twice.
        """

        def scan(txn: lmdb.Transaction) -> tuple[GalleryRecord, np.ndarray, np.ndarray]:
            gallery = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"]))
            ids = np.empty(gallery.faces, dtype=np.int64)
            vectors = np.empty((gallery.faces, gallery.dim or 0), dtype=np.float32)
            count = 0
            cursor = txn.cursor(db=self.db["faces"])
            if cursor.set_range(u64(gid)):
                for key, raw in cursor:
                    if key[:8] != u64(gid):
                        break
                    if count == len(ids):
                        raise RuntimeError(f"gallery {gid} holds more faces than its record counts")
                    ids[count] = second_of(key)
                    vectors[count] = decode_face(raw).vector
                    count += 1
            return gallery, ids[:count], vectors[:count]

        return self.read(scan)

    def commit_generation(self, gid: int, expected: int) -> GalleryRecord:
        """Point the gallery at index generation ``expected + 1``, unless another rebuild did."""

        def commit(txn: lmdb.Transaction) -> GalleryRecord:
            gallery = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"]))
            if gallery.index_generation != expected:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            gallery.index_generation += 1
            txn.put(u64(gid), gallery.encode(), db=self.db["galleries"])
            return gallery

        return self.write(commit)

    # -- re-embedding ------------------------------------------------------------------

    def image_ids(self, gid: int) -> list[int]:
        return self.read(lambda txn: self._image_ids(txn, gid))

    def _image_ids(self, txn: lmdb.Transaction, gid: int) -> list[int]:
        cursor = txn.cursor(db=self.db["gallery_images"])
        found: list[int] = []
        if cursor.set_range(u64(gid)):
            for key in cursor.iternext(values=False):
                if key[:8] != u64(gid):
                    break
                found.append(second_of(key))
        return found

    def _staged_face(self, txn: lmdb.Transaction, gid: int, face_id: int, pack: str) -> bytes | None:
        """A face's staged vector in ``pack`` (one left by an abandoned run for another pack is not)."""
        raw = txn.get(pair(gid, face_id), db=self.db["staged"])
        return raw if raw is not None and decode_face(raw).pack == pack else None

    def _delete_staging(self, txn: lmdb.Transaction, gid: int) -> None:
        for name in ("staged", "staged_images"):
            cursor = txn.cursor(db=self.db[name])
            if cursor.set_range(u64(gid)):
                while cursor.key()[:8] == u64(gid) and cursor.delete():
                    pass

    def stage_embeddings(self, gid: int, image_id: int, pack: str, vectors: dict[int, np.ndarray]) -> None:
        """Keep an image's re-embedded faces aside; the serving vectors stay untouched."""

        def stage(txn: lmdb.Transaction) -> None:
            for face_id, vector in vectors.items():
                txn.put(pair(gid, face_id), encode_face(image_id, pack, vector), db=self.db["staged"])
            entry = dumps({"pack": pack, "faces": sorted(vectors)})
            txn.put(pair(gid, image_id), entry, db=self.db["staged_images"])

        self.write(stage)

    def staged_image_ids(self, gid: int, pack: str) -> set[int]:
        """Images already re-embedded with ``pack``, so a resumed run skips them."""

        def scan(txn: lmdb.Transaction) -> set[int]:
            cursor = txn.cursor(db=self.db["staged_images"])
            found: set[int] = set()
            if cursor.set_range(u64(gid)):
                for key, raw in cursor:
                    if key[:8] != u64(gid):
                        break
                    if json.loads(raw)["pack"] == pack:
                        found.add(second_of(key))
            return found

        return self.read(scan)

    def staged_snapshot(self, gid: int, pack: str) -> tuple[GalleryRecord, np.ndarray, np.ndarray, list[int]]:
        """The re-embedded vectors of every live face, the record they match, and the images
        not re-embedded yet (added since the run began), all read in one transaction."""

        def scan(txn: lmdb.Transaction) -> tuple[GalleryRecord, np.ndarray, np.ndarray, list[int]]:
            gallery = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"]))
            ids: list[int] = []
            vectors: list[np.ndarray] = []
            missing: list[int] = []
            for image_id in self._image_ids(txn, gid):
                entry = txn.get(pair(gid, image_id), db=self.db["staged_images"])
                if entry is None or json.loads(entry)["pack"] != pack:
                    missing.append(image_id)
                    continue
                record = ImageRecord.decode(txn.get(u64(image_id), db=self.db["images"]))
                for face in record.faces:
                    staged = self._staged_face(txn, gid, face.id, pack)
                    if staged is not None:
                        ids.append(face.id)
                        vectors.append(decode_face(staged).vector)
            stacked = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
            return gallery, np.array(ids, dtype=np.int64), stacked, missing

        return self.read(scan)

    def swap_embeddings(self, gid: int, pack: str, dim: int, since_seq: int, generation: int) -> GalleryRecord:
        """Replace every face vector of the gallery by its staged one in one transaction.

        Also moves the gallery to ``pack`` and to index generation ``generation + 1`` (an
        index of the staged vectors as of ``since_seq`` must already be written), so a
        server switches packs, vectors and index together. Faces the new pack's detector
        did not find again are removed and logged. Refused when a face was added after
        ``since_seq``: it is still in the old pack and would be missing from the new index.
        """

        def swap(txn: lmdb.Transaction) -> GalleryRecord:
            gallery = GalleryRecord.decode(txn.get(u64(gid), db=self.db["galleries"]))
            if gallery.index_generation != generation:
                raise GenerationConflictError(f"gallery {gid} is at index generation {gallery.index_generation}")
            if any(change.is_add for change in self._changes_after(txn, gid, since_seq)):
                raise StagingIncompleteError(f"faces were added to gallery {gid} during the re-embedding")
            for image_id in self._image_ids(txn, gid):
                entry = txn.get(pair(gid, image_id), db=self.db["staged_images"])
                if entry is None or json.loads(entry)["pack"] != pack:
                    raise StagingIncompleteError(f"image {image_id} of gallery {gid} is not re-embedded")
                record = ImageRecord.decode(txn.get(u64(image_id), db=self.db["images"]))
                kept = []
                for face in record.faces:
                    raw = self._staged_face(txn, gid, face.id, pack)
                    if raw is None:
                        txn.delete(pair(gid, face.id), db=self.db["faces"])
                        self._log(txn, gallery, gid, REMOVE, face.id)
                        gallery.faces -= 1
                    else:
                        txn.put(pair(gid, face.id), raw, db=self.db["faces"])
                        kept.append(face)
                record.faces, record.pack = kept, pack
                txn.put(u64(image_id), record.encode(), db=self.db["images"])
            self._delete_staging(txn, gid)
            gallery.pack, gallery.dim = pack, dim
            gallery.index_generation += 1
            txn.put(u64(gid), gallery.encode(), db=self.db["galleries"])
            return gallery

        return self.write(swap)
