"""The indexes as an operator sees them: each gallery's state, and rebuilds of one key's
gallery, of all, or of those that drifted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from index.catalog import Catalog
from index.errors import IndexBusyError
from index.records import KeyRecord
from index.vectors import IndexStatus, RebuildResult, SearchObserver, VectorIndexes

from .errors import UnknownKey

__all__ = ["GalleryState", "IndexStatus", "Maintenance", "Outcome", "Overview"]


@dataclass(frozen=True)
class Outcome:
    key: str
    gallery: int
    reason: str | None  # why it was rebuilt; None when --if-needed found nothing to do
    result: RebuildResult | None = None
    busy: bool = False


@dataclass(frozen=True)
class GalleryState:
    """One gallery as the catalog counts it, and its index as this process holds it (None
    when the vector index cannot be reached)."""

    gallery: int
    images: int
    faces: int
    rebuilds: int  # index generations committed
    index: IndexStatus | None


@dataclass(frozen=True)
class Overview:
    keys: int
    galleries: list[GalleryState]


class Maintenance:
    def __init__(self, catalog: Catalog, indexes: VectorIndexes) -> None:
        self.catalog, self.indexes = catalog, indexes

    def observe_searches(self, observer: SearchObserver) -> None:
        """Tell ``observer`` how long each index search takes (the service's metrics)."""
        self.indexes.observe_searches(observer)

    def index_status(self, key: KeyRecord) -> IndexStatus:
        """``GET /index``: the key's gallery's index."""
        return self.indexes.status(key.gallery)

    def overview(self) -> Overview:
        """Every gallery's sizes and index state (``/metrics``); a vector index that cannot be
        reached leaves the catalog's side to report."""
        states = []
        for gid, gallery in sorted(self.catalog.images.galleries().items()):
            try:
                status: IndexStatus | None = self.indexes.status(gid)
            except OSError:  # the vector server is down
                status = None
            states.append(GalleryState(gid, gallery.images, gallery.faces, gallery.index_generation, status))
        return Overview(len(self.catalog.keys.all()), states)

    def galleries_of(self, key: str | None) -> dict[int, str]:
        """Gallery id to key name: the one key's, or every gallery's when ``key`` is None."""
        if key is None:
            return {gid: gallery.key for gid, gallery in self.catalog.images.galleries().items()}
        record = self.catalog.keys.get(key)
        if record is None:
            raise UnknownKey(f"no key named {key!r}")
        return {record.gallery: key}

    def rebuild_indexes(
        self, key: str | None, if_needed: bool = False, wait: bool = False, progress: Callable[[str], None] = print
    ) -> list[Outcome]:
        """Rebuild the chosen galleries' indexes; a running server adopts each at its next search."""
        outcomes = []
        for gid, name in self.galleries_of(key).items():
            reason = self.indexes.rebuild_reason(gid)
            if if_needed and reason is None:
                outcomes.append(Outcome(name, gid, None))
                continue
            reason = reason or "asked for"
            progress(f"key {name} (gallery {gid}): rebuilding: {reason}")
            try:
                result = self.indexes.rebuild(gid, wait, progress)
            except IndexBusyError as exc:
                progress(str(exc))
                outcomes.append(Outcome(name, gid, reason, busy=True))
                continue
            outcomes.append(Outcome(name, gid, reason, result))
        return outcomes
