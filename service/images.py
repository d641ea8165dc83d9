"""Gallery use cases: add, list, read, update and delete images.

An add is written in the order that makes a crash harmless: photo file first (atomic),
then one LMDB transaction with the record, its faces and their change-log entries, and
only then the acknowledgement. A crash before the commit leaves an orphan file that the
next start removes; after it, the index catches up from the log.
"""

from __future__ import annotations

import logging
import threading

from index.records import ImageRecord, KeyRecord, NewFace
from index.store import PackMismatchError
from models.decode import ImageDecodeError, content_type
from models.faces import Face

from .context import Services
from .errors import ApiError, Code
from .keys import now

log = logging.getLogger(__name__)

# One LMDB change at a time per process: short, since the models run and the photo file is
# written (and fsynced) before it is taken.
_write_lock = threading.Lock()


def storage_error(exc: OSError) -> ApiError:
    """Disk full or failing: say so, and that nothing of this request was kept."""
    log.error("storage write failed: %s", exc)
    return ApiError(
        Code.STORAGE_ERROR, f"the data directory could not be written ({exc.strerror or exc}); nothing was stored"
    )


def detect_faces(services: Services, data: bytes, limit: int | None = None) -> list[Face]:
    """Every face in the photo (the ``limit`` largest), largest first; code 1 for bytes that are not a photo."""
    try:
        return services.analyzer.faces_in_bytes(data, limit)
    except ImageDecodeError as exc:
        raise ApiError(Code.NO_CONTENT, str(exc)) from exc


def add_faces(
    services: Services,
    key: KeyRecord,
    data: bytes,
    metadata: dict,
    faces: list[Face],
    source_digest: bytes | None = None,
) -> ImageRecord:
    """Store a photo whose faces are already embedded (the bulk importer batches that step,
    and passes the photo's content hash so a resumed import skips it)."""
    if not faces:
        raise ApiError(Code.NO_FACE, "no face was found in the image")
    new_faces = [NewFace(bbox=f.box(), score=round(f.detection.score, 4), embedding=f.embedding) for f in faces]
    mime = content_type(data) or "application/octet-stream"
    try:
        name = services.photos.write(key.gallery, data, mime)
    except OSError as exc:
        raise storage_error(exc) from exc
    with _write_lock:
        try:
            record = services.store.add_image(
                key.gallery, name, mime, metadata, now(), services.pack.name, new_faces, source_digest
            )
        except PackMismatchError as exc:
            services.photos.delete(name)
            raise ApiError(Code.PACK_MISMATCH, str(exc)) from exc
        except OSError as exc:
            services.photos.delete(name)
            raise storage_error(exc) from exc
        except BaseException:
            services.photos.delete(name)
            raise
    services.indexes.sync(key.gallery)
    return record


def add_image(services: Services, key: KeyRecord, data: bytes, metadata: dict) -> ImageRecord:
    """Store the photo and index every face in it; nothing is stored when it has no face."""
    return add_faces(services, key, data, metadata, detect_faces(services, data))


def list_images(services: Services, key: KeyRecord, offset: int, limit: int) -> tuple[list[ImageRecord], int]:
    return services.store.list_images(key.gallery, offset, limit)


def get_image(services: Services, key: KeyRecord, image_id: int) -> ImageRecord:
    record = services.store.get_image(key.gallery, image_id)
    if record is None:
        raise ApiError(Code.NOT_FOUND, f"no image with id {image_id}")
    return record


def photo_bytes(services: Services, key: KeyRecord, image_id: int) -> tuple[bytes, str]:
    record = get_image(services, key, image_id)
    return services.photos.read(record.file), record.content_type


def update_metadata(services: Services, key: KeyRecord, image_id: int, metadata: dict) -> ImageRecord:
    record = services.store.update_metadata(key.gallery, image_id, metadata)
    if record is None:
        raise ApiError(Code.NOT_FOUND, f"no image with id {image_id}")
    return record


def delete_images(services: Services, key: KeyRecord, image_ids: list[int]) -> list[int]:
    """Delete the key's images among ``image_ids``; ids of other keys or unknown are ignored.

    The index is brought up to date before returning, so no later answer shows them.
    """
    with _write_lock:
        deleted = services.store.delete_images(key.gallery, image_ids)
    services.indexes.sync(key.gallery)
    for record in deleted:
        services.photos.delete(record.file)
    return [record.id for record in deleted]
