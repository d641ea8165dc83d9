"""The use cases as a script calls them, in the few words the tests need."""

from __future__ import annotations

from dataclasses import asdict

from index.records import ImageRecord, KeyRecord
from service.core.requests import AddImage, DeleteImages, FaceFilter, Page, Photo, Search
from service.core.search import NO_FILTER, Match
from service.core.services import Services
from service.core.views import Image


def add(services: Services, key: KeyRecord, data: bytes, metadata: dict | None = None) -> ImageRecord:
    """The image as ``POST /images`` adds it, and as the catalog then holds it (its photo file's name too)."""
    added = services.adder.add(key, AddImage(Photo(data), metadata or {}))
    return services.catalog.images.get(key.gallery, added.id)


def find(
    services: Services,
    key: KeyRecord,
    data: bytes,
    top_k: int = 10,
    threshold: float | None = None,
    stored: FaceFilter = NO_FILTER,
) -> list[Match]:
    return services.searcher.search(key, Search(Photo(data), top_k, threshold, "largest", stored))


def delete(services: Services, key: KeyRecord, ids: list[int]) -> list[int]:
    return services.gallery.delete(key, DeleteImages(ids))


def page(services: Services, key: KeyRecord, offset: int = 0, limit: int = 50) -> tuple[list[Image], int]:
    return services.gallery.page(key, Page(offset, limit))


def index_state(services: Services, gid: int) -> dict:
    """The gallery's index status as one flat dict (the shape of GET /index)."""
    status = services.indexes.status(gid)
    details = asdict(status.details) if status.details is not None else {}
    return {
        "kind": status.kind,
        "vectors": status.vectors,
        **details,
        "generation": status.generation,
        "committed_generation": status.committed_generation,
    }
