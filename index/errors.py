"""What the storage seam raises, whatever backend is behind it.

The use cases (``service.core``) turn these into their own errors; nothing here knows of
HTTP codes.
"""

from __future__ import annotations


class StorageError(OSError):
    """A write could not be made durable (disk full, I/O error); nothing of it was kept."""


class StorageUnavailableError(StorageError):
    """A storage component cannot be reached right now (a database server is down); nothing
    of the write was kept, and the call can be retried once it is back."""


class CommitUnknownError(StorageUnavailableError):
    """The connection to a database server was lost while a write was committing: it may or
    may not be stored, so what it refers to (a photo file) must be kept."""


class CatalogNotEmptyError(RuntimeError):
    """A backup is restored into an empty catalog only; this one holds data."""


class KeyExistsError(KeyError):
    """A key of that name exists already."""


class PackMismatchError(ValueError):
    """A gallery holds embeddings of one pack; vectors of another cannot be compared with them."""

    def __init__(self, gallery_pack: str, pack: str) -> None:
        self.gallery_pack, self.pack = gallery_pack, pack
        super().__init__(
            f"this gallery was embedded with model pack {gallery_pack!r} but the service runs "
            f"{pack!r}, whose models do not make that pack's vectors; embeddings of different packs "
            "cannot be compared: run the service with "
            f"FACE_SEARCH_MODELS={gallery_pack}, or re-embed the gallery with scripts/reembed.py"
        )


class GenerationConflictError(RuntimeError):
    """Another rebuild replaced the gallery's index first; this one is stale."""


class StagingIncompleteError(RuntimeError):
    """Faces were added while a re-embedding ran: they must be re-embedded before the swap."""


class IndexBusyError(RuntimeError):
    """Another rebuild or re-embedding of this gallery is running."""
