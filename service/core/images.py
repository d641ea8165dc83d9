"""Gallery use cases: add, list, read, update and delete images.

An add is written in the order that makes a crash harmless: photo file first (atomic),
then one catalog write with the record, its faces and their change-log entries, and
only then the acknowledgement. A crash before the commit leaves an orphan file that the
next start removes; after it, the index catches up from the log.

Faces are embedded in the gallery's pack: the running pack's vectors for a new gallery,
and for a gallery of a pack the running models also serve (a data directory kept through
an upgrade), that pack's (``FaceReader.pack_for``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from index.catalog import ImageTable
from index.errors import CommitUnknownError, PackMismatchError
from index.filters import DEFAULT_COLLECTION
from index.records import ImageRecord, KeyRecord, NewFace, NewImage
from index.vectors import VectorIndexes
from models.analyzer import FaceAnalyzer
from models.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, content_type, face_thumbnail, thumbnail
from models.faces import Face
from models.packs import ModelPack

from .errors import (
    FaceNotFound,
    ImageNotFound,
    NoFace,
    NotAPhoto,
    PackMismatch,
    PhotoMissing,
    StorageUnavailable,
    writing,
)
from .fetch import FetchSettings, fetch_image
from .filters import FilterKeys
from .keys import now
from .photos import PhotoStore
from .requests import AddImage, DeleteCollection, DeleteImages, ImageUpdate, Page, Photo
from .views import Collection, Image, PersonRef

log = logging.getLogger(__name__)

# A thumbnail is for pages that list many photos: at most this many pixels on its longer side.
THUMBNAIL_SIDE = 256
THUMBNAIL_QUALITY = 80
FACE_SIDE = 160  # a face's thumbnail, square
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, with or without a data: prefix, line breaks or padding."""
    try:  # plain standard base64, what clients send: skip the cleaning passes, which cost far more
        if decoded := base64.b64decode(text, validate=True):
            return decoded
    except (binascii.Error, ValueError):
        pass
    text = _WHITESPACE.sub("", _DATA_URL.sub("", text.strip(), count=1))
    if not text:
        raise NotAPhoto("image.base64 is empty")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NotAPhoto("image.base64 is not valid base64") from None


def stored(vector: np.ndarray, pack: ModelPack) -> np.ndarray:
    """A vector as the catalog keeps it for ``pack`` (float16 halves a 1024-d face)."""
    return vector.astype(pack.store_as, copy=False)


class FaceReader:
    """Photos to faces: the bytes a request sent (as they are, decoded from base64, or
    downloaded through the address guard) and the faces the pack's models find in them, in
    the vectors of the running pack or of a pack it serves. The models are loaded on first use
    (``analyzer``), so key management never pays for them."""

    def __init__(self, pack: ModelPack, analyzer: Callable[[], FaceAnalyzer], fetch: FetchSettings) -> None:
        self.pack, self.analyzer, self.fetch = pack, analyzer, fetch

    def pack_for(self, gallery_pack: str | None) -> ModelPack:
        """The pack whose vectors a gallery holding ``gallery_pack``'s is searched and filled with:
        that pack when the running models make its vectors (the running pack, or one it serves),
        the running pack for a gallery that holds none yet; PackMismatch otherwise, before any
        model runs."""
        if gallery_pack is None:
            return self.pack
        served = self.pack.pack_named(gallery_pack)
        if served is None:
            raise PackMismatch(str(PackMismatchError(gallery_pack, self.pack.name)))
        return served

    def photo_data(self, photo: Photo) -> bytes:
        if photo.data is not None:
            return photo.data
        if photo.base64 is not None:
            return decode_base64(photo.base64)
        if photo.url is None:
            raise NotAPhoto("the body has no image")
        return fetch_image(photo.url, self.fetch)

    def faces_in(self, data: bytes, limit: int | None = None, pack: str | None = None) -> list[Face]:
        """Every face in the photo (the ``limit`` largest), largest first, in ``pack``'s vectors (the
        running pack's by default); NotAPhoto for bytes that are not one."""
        try:
            return self.analyzer().faces_in_bytes(data, limit, pack)
        except ImageDecodeError as exc:
            raise NotAPhoto(str(exc)) from exc

    def faces_in_many(self, photos: Sequence[bytes], pack: str | None = None) -> list[list[Face] | None]:
        """``faces_in`` of several photos in one model call (None for one that is not a photo)."""
        return self.analyzer().faces_in_many(photos, pack)


Attach = Callable[[int, list[np.ndarray]], list[int | None]]  # (gallery, new faces' embeddings) -> their persons
Names = Callable[[int, list[int]], dict[int, PersonRef]]  # (gallery, face ids) -> the person of each in one

DELETE_BATCH = 500  # images of a collection deleted per catalog write


class Gallery:
    """A key's images: stored with their photo and faces, read, listed (a collection of them,
    those a filter passes), updated, moved between collections and deleted, with the vector
    index kept in step. A new photo's faces join the persons they clearly belong to in the same
    write (``attach``); an image is answered with its faces' persons."""

    def __init__(
        self,
        images: ImageTable,
        indexes: VectorIndexes,
        photos: PhotoStore,
        keys: FilterKeys,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        names: Names = lambda gid, faces: {},
        attach: Attach | None = None,
    ) -> None:
        self.images, self.indexes, self.photos, self.keys = images, indexes, photos, keys
        self.max_pixels = max_pixels  # of a stored photo a thumbnail is made from
        self.names, self.attach = names, attach

    def view(self, gid: int, record: ImageRecord) -> Image:
        """The image as answered: each face with its person."""
        return Image.of(record, self.names(gid, [face.id for face in record.faces]))

    def store(
        self,
        key: KeyRecord,
        data: bytes,
        metadata: dict[str, Any],
        faces: list[Face],
        pack: ModelPack,
        source_digest: bytes | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> Image:
        """Store a photo whose faces are already embedded in ``pack``'s vectors (the bulk importer
        batches that step, and passes the photo's content hash so a resumed import skips it)."""
        if not faces:
            raise NoFace("no face was found in the image")
        persons = self.attach(key.gallery, [f.embedding for f in faces]) if self.attach else [None] * len(faces)
        new_faces = [
            NewFace(bbox=f.box(), score=round(f.detection.score, 4), embedding=stored(f.embedding, pack), person=person)
            for f, person in zip(faces, persons, strict=True)
        ]
        mime = content_type(data) or "application/octet-stream"
        with writing():
            name = self.photos.write(key.gallery, data, mime)
        image = NewImage(name, mime, metadata, now(), pack.name, new_faces, source_digest, collection)
        try:
            with writing():
                record = self.images.add(key.gallery, image)
        except PackMismatchError as exc:
            self.photos.delete(name)
            raise PackMismatch(str(exc)) from exc
        except BaseException as exc:
            if not isinstance(exc.__cause__, CommitUnknownError):  # else it may be stored, and need its photo
                self.photos.delete(name)
            raise
        self.indexes.sync(key.gallery)
        return self.view(key.gallery, record)

    def page(self, key: KeyRecord, request: Page) -> tuple[list[Image], int]:
        """One page of the key's images in the request's scope, and how many the scope holds."""
        self.keys.used(key.gallery, request.scope)
        records, total = self.images.page(key.gallery, request.offset, request.limit, request.scope)
        return [Image.of(record) for record in records], total

    def collections(self, key: KeyRecord) -> list[Collection]:
        """The key's collections that hold an image, by name."""
        found = self.images.collections(key.gallery)
        return [Collection(name, count.images, count.faces) for name, count in sorted(found.items())]

    def _record(self, gallery: int, image_id: int) -> ImageRecord:
        record = self.images.get(gallery, image_id)
        if record is None:
            raise ImageNotFound(f"no image with id {image_id}")
        return record

    def get(self, key: KeyRecord, image_id: int) -> Image:
        return self.view(key.gallery, self._record(key.gallery, image_id))

    def _photo(self, record: ImageRecord) -> bytes:
        """The stored photo's bytes; a record whose file is gone is PhotoMissing."""
        try:
            return self.photos.read(record.file)
        except FileNotFoundError as exc:
            log.error("image %d: photo file %s is missing", record.id, record.file)
            raise PhotoMissing(f"the photo file of image {record.id} is missing from the photo store") from exc
        except OSError as exc:
            log.error("image %d: photo file %s cannot be read: %s", record.id, record.file, exc)
            raise StorageUnavailable(f"the photo of image {record.id} cannot be read ({exc.strerror or exc})") from exc

    def photo(self, gallery: int, image_id: int) -> tuple[bytes, str]:
        """The gallery's stored photo and its content type (a key's, or a signed link's gallery)."""
        record = self._record(gallery, image_id)
        return self._photo(record), record.content_type

    def thumbnail(self, gallery: int, image_id: int) -> bytes:
        """The photo's thumbnail (a JPEG), made on its first request and kept beside the photo.

        Made on demand rather than when the photo is added, so adding costs nothing more and
        images stored before thumbnails existed get theirs the same way. A thumbnail that
        cannot be kept (disk full) is served all the same and made again next time.
        """
        record = self._record(gallery, image_id)
        try:
            return self.photos.read_thumbnail(record.file)
        except FileNotFoundError:
            pass
        try:
            data = thumbnail(self._photo(record), THUMBNAIL_SIDE, THUMBNAIL_QUALITY, self.max_pixels)
        except ImageDecodeError as exc:  # it was decoded when it was added: the file changed since
            raise StorageUnavailable(f"the photo of image {record.id} cannot be decoded any more ({exc})") from exc
        try:
            self.photos.write_thumbnail(record.file, data)
        except OSError as exc:
            log.warning("image %d: its thumbnail could not be kept: %s", record.id, exc)
        return data

    def face_thumbnail(self, gallery: int, face_id: int) -> bytes:
        """A small square JPEG of one face, cut from its photo (made on each request: a list of
        persons shows a few dozen)."""
        image_id = self.images.images_of_faces(gallery, [face_id]).get(face_id)
        record = self.images.get(gallery, image_id) if image_id is not None else None
        if record is None:
            raise FaceNotFound(f"no face with id {face_id}")
        try:
            return face_thumbnail(self._photo(record), record.face(face_id).bbox, FACE_SIDE, THUMBNAIL_QUALITY,
                                  self.max_pixels)  # fmt: skip
        except ImageDecodeError as exc:  # it was decoded when it was added: the file changed since
            raise StorageUnavailable(f"the photo of image {record.id} cannot be decoded any more ({exc})") from exc

    def update(self, key: KeyRecord, request: ImageUpdate) -> Image:
        """Replace an image's metadata, move it to another collection, or both; the next search
        and listing see it."""
        with writing():
            record = self.images.update(key.gallery, request.image_id, request.metadata, request.collection)
        if record is None:
            raise ImageNotFound(f"no image with id {request.image_id}")
        self.indexes.sync(key.gallery)
        return self.view(key.gallery, record)

    def delete_collection(self, key: KeyRecord, request: DeleteCollection) -> int:
        """Delete every image of the collection, a batch per catalog write, then ask for the
        index to be compacted; how many images were deleted (0: no such collection). A crash
        half-way leaves the rest of the collection: deleting it again finishes the job."""
        deleted = 0
        while True:
            with writing():
                batch = self.images.delete_collection(key.gallery, request.name, DELETE_BATCH)
            if not batch:
                break
            self.indexes.sync(key.gallery)
            for record in batch:
                self.photos.delete(record.file)
            deleted += len(batch)
        if deleted:
            self.indexes.request_rebuild(key.gallery, f"compaction: collection {request.name!r} deleted")
        return deleted

    def delete(self, key: KeyRecord, request: DeleteImages) -> list[int]:
        """Delete the key's images among the ids; ids of other keys or unknown are ignored.

        The index is brought up to date before returning, so no later answer shows them.
        """
        with writing():
            deleted = self.images.delete(key.gallery, request.ids)
        self.indexes.sync(key.gallery)
        for record in deleted:
            self.photos.delete(record.file)
        return [record.id for record in deleted]


class ImageAdder:
    """``POST /images``: store the photo and index every face in it; nothing is stored when it
    has no face."""

    def __init__(self, reader: FaceReader, gallery: Gallery) -> None:
        self.reader, self.gallery = reader, gallery

    def add(self, key: KeyRecord, request: AddImage) -> Image:
        data = self.reader.photo_data(request.photo)
        pack = self.reader.pack_for(self.gallery.images.gallery(key.gallery).pack)
        faces = self.reader.faces_in(data, pack=pack.name)
        return self.gallery.store(key, data, request.metadata, faces, pack, collection=request.collection)
