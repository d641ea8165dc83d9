"""Gallery use cases: add, list, read, update and delete images.

An add is written in the order that makes a crash harmless: photo file first (atomic),
then one catalog write with the record, its faces and their change-log entries, and
only then the acknowledgement. A crash before the commit leaves an orphan file that the
next start removes; after it, the index catches up from the log.

Faces are embedded in the gallery's pack: the running pack's vectors for a new gallery,
and for a gallery of a pack the running models also serve (a data directory kept through
an upgrade), that pack's (``Services.pack_for``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re

import numpy as np

from index.errors import CommitUnknownError, PackMismatchError
from index.records import ImageRecord, KeyRecord, NewFace, NewImage
from models.decode import ImageDecodeError, content_type
from models.faces import Face
from models.packs import ModelPack

from .errors import ImageNotFound, NoFace, NotAPhoto, PackMismatch, PhotoMissing, StorageUnavailable, writing
from .fetch import fetch_image
from .keys import now
from .requests import AddImage, DeleteImages, MetadataUpdate, Page, Photo
from .services import Services

log = logging.getLogger(__name__)

_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, with or without a data: prefix, line breaks or padding."""
    try:  # plain standard base64, what clients send: skip the cleaning passes (20-30 ms per MB)
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


def photo_data(services: Services, photo: Photo) -> bytes:
    """The photo's bytes: as sent, decoded from base64, or downloaded through the address guard."""
    if photo.data is not None:
        return photo.data
    if photo.base64 is not None:
        return decode_base64(photo.base64)
    if photo.url is None:
        raise NotAPhoto("the body has no image")
    return fetch_image(photo.url, services.settings.fetch)


def detect_faces(services: Services, data: bytes, limit: int | None = None, pack: str | None = None) -> list[Face]:
    """Every face in the photo (the ``limit`` largest), largest first, in ``pack``'s vectors (the
    running pack's by default); NotAPhoto for bytes that are not one."""
    try:
        return services.analyzer.faces_in_bytes(data, limit, pack)
    except ImageDecodeError as exc:
        raise NotAPhoto(str(exc)) from exc


def gallery_pack(services: Services, key: KeyRecord) -> ModelPack:
    """The pack the key's gallery is filled and searched with; PackMismatch when the running models cannot."""
    return services.pack_for(services.catalog.images.gallery(key.gallery).pack)


def stored(vector: np.ndarray, pack: ModelPack) -> np.ndarray:
    """A vector as the catalog keeps it for ``pack`` (float16 halves a 1024-d face)."""
    return vector.astype(pack.store_as, copy=False)


def add_faces(
    services: Services,
    key: KeyRecord,
    data: bytes,
    metadata: dict,
    faces: list[Face],
    pack: ModelPack,
    source_digest: bytes | None = None,
) -> ImageRecord:
    """Store a photo whose faces are already embedded in ``pack``'s vectors (the bulk importer
    batches that step, and passes the photo's content hash so a resumed import skips it)."""
    if not faces:
        raise NoFace("no face was found in the image")
    new_faces = [
        NewFace(bbox=f.box(), score=round(f.detection.score, 4), embedding=stored(f.embedding, pack)) for f in faces
    ]
    mime = content_type(data) or "application/octet-stream"
    with writing():
        name = services.photos.write(key.gallery, data, mime)
    image = NewImage(name, mime, metadata, now(), pack.name, new_faces, source_digest)
    try:
        with writing():
            record = services.catalog.images.add(key.gallery, image)
    except PackMismatchError as exc:
        services.photos.delete(name)
        raise PackMismatch(str(exc)) from exc
    except BaseException as exc:
        if not isinstance(exc.__cause__, CommitUnknownError):  # else it may be stored, and need its photo
            services.photos.delete(name)
        raise
    services.indexes.sync(key.gallery)
    return record


def add_image(services: Services, key: KeyRecord, request: AddImage) -> ImageRecord:
    """Store the photo and index every face in it; nothing is stored when it has no face."""
    data = photo_data(services, request.photo)
    pack = gallery_pack(services, key)
    return add_faces(services, key, data, request.metadata, detect_faces(services, data, pack=pack.name), pack)


def list_images(services: Services, key: KeyRecord, request: Page) -> tuple[list[ImageRecord], int]:
    return services.catalog.images.page(key.gallery, request.offset, request.limit)


def get_image(services: Services, key: KeyRecord, image_id: int) -> ImageRecord:
    record = services.catalog.images.get(key.gallery, image_id)
    if record is None:
        raise ImageNotFound(f"no image with id {image_id}")
    return record


def photo_bytes(services: Services, key: KeyRecord, image_id: int) -> tuple[bytes, str]:
    """The stored photo and its content type; a record whose file is gone is PhotoMissing."""
    record = get_image(services, key, image_id)
    try:
        return services.photos.read(record.file), record.content_type
    except FileNotFoundError as exc:
        log.error("image %d: photo file %s is missing", image_id, record.file)
        raise PhotoMissing(f"the photo file of image {image_id} is missing from the photo store") from exc
    except OSError as exc:
        log.error("image %d: photo file %s cannot be read: %s", image_id, record.file, exc)
        raise StorageUnavailable(f"the photo of image {image_id} cannot be read ({exc.strerror or exc})") from exc


def update_metadata(services: Services, key: KeyRecord, request: MetadataUpdate) -> ImageRecord:
    with writing():
        record = services.catalog.images.update_metadata(key.gallery, request.image_id, request.metadata)
    if record is None:
        raise ImageNotFound(f"no image with id {request.image_id}")
    return record


def delete_images(services: Services, key: KeyRecord, request: DeleteImages) -> list[int]:
    """Delete the key's images among the ids; ids of other keys or unknown are ignored.

    The index is brought up to date before returning, so no later answer shows them.
    """
    with writing():
        deleted = services.catalog.images.delete(key.gallery, request.ids)
    services.indexes.sync(key.gallery)
    for record in deleted:
        services.photos.delete(record.file)
    return [record.id for record in deleted]
