"""The use cases' own errors: what went wrong, in terms of photos, faces, keys and storage.

Nothing here knows of HTTP. ``service.api.errors`` maps each type to the API's numbered
code and HTTP status in one table; the scripts print the message. Every message is meant
to be read by the person who sent the request, and says what to do where that helps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from index.errors import CommitUnknownError, StorageUnavailableError

# A read that meets a storage component down raises the storage's own error (reads are not
# wrapped one by one, as writes are by ``writing``); the HTTP layer answers it as StorageUnavailable.
StorageDown = StorageUnavailableError

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every refusal a use case can make; ``str()`` is the detail for the client."""


class NotAPhoto(ServiceError):
    """The bytes are missing, empty, or not a photo this service can decode."""


class UrlUnavailable(ServiceError):
    """The photo's URL cannot be fetched, is refused by the address guard, or is not an image."""


class NoFace(ServiceError):
    """No face was found in the photo."""


class QuotaExceeded(ServiceError):
    """The key has made every request its quota allows."""


class BadCredentials(ServiceError):
    """Missing, unknown, wrong or revoked credentials."""


class UnknownKey(ServiceError):
    """No key of that name (for the scripts that take one)."""


class InvalidRequest(ServiceError):
    """A value breaks a rule of the API (metadata size, nesting or reserved keys)."""


class ImageNotFound(ServiceError):
    """No image with that id in the key's gallery (another key's image is as good as absent)."""


class PersonNotFound(ServiceError):
    """No person with that id in the key's gallery (another key's person is as good as absent)."""


class FaceNotFound(ServiceError):
    """No face with that id in the key's gallery (unknown, deleted, or another key's)."""


class JobNotFound(ServiceError):
    """No job with that id for the key's gallery (unknown, long ended, or another key's)."""


class Conflict(ServiceError):
    """A person edit that no longer fits: a face moved meanwhile (another request won), or a
    person would hold two faces of one photo. Nothing was changed."""


class LinkRefused(ServiceError):
    """A signed photo link that has expired, was altered, names another image, or was signed
    with a secret that has since been rotated."""


class PhotoMissing(ServiceError):
    """The image exists but its photo file is gone from the photo store."""


class PackMismatch(ServiceError):
    """The gallery's faces come from another model pack than the one running."""


class GalleryBusy(ServiceError):
    """Another process is rebuilding or re-embedding the gallery."""


class StorageFull(ServiceError):
    """A write could not be made durable (disk full, I/O error); nothing of it was kept."""


class StorageUnavailable(ServiceError):
    """Storage cannot be reached or read right now; a write that meets this kept nothing, unless its
    message says that its commit is in doubt."""


@contextmanager
def writing() -> Iterator[None]:
    """Storage failures of a write, as the use cases' own errors: nothing of it was kept, but for
    a commit whose outcome the database never told (the one case whose message says it may be stored)."""
    try:
        yield
    except CommitUnknownError as exc:
        raise StorageUnavailable(
            f"{exc}, and it did not answer in time about it: the write may or may not be stored; once storage is "
            "back, look it up (list or search) before sending it again"
        ) from exc
    except StorageUnavailableError as exc:
        raise StorageUnavailable(f"{exc}; nothing was stored, retry once it is back") from exc
    except OSError as exc:  # the catalog's StorageError, or a photo file's write
        log.error("storage write failed: %s", exc)
        raise StorageFull(
            f"the data directory could not be written ({exc.strerror or exc}); nothing was stored"
        ) from exc
