"""``index.vectors.VectorIndexes`` over Milvus, kept in step with the catalog's outbox
(``index.catalog.OutboxCatalog``: PostgreSQL's).

Every write commits to PostgreSQL (record, faces and change-log rows together) and is
acknowledged then; ``sync`` applies the gallery's outbox to Milvus right away when it can,
and the background applier of every serving replica retries whatever is left (Milvus
down, a writer killed between commit and apply, a script's writes).

What a search sees: it first applies any change of the gallery still in the outbox, so a
change committed anywhere is searched. Milvus makes a write visible to searches a moment
after taking it, so a search runs at ``Strong`` consistency (which waits for Milvus to catch
up) while the gallery's last change was applied less than ``STRONG_SECONDS`` ago, and at
``Bounded`` (no wait) otherwise. A hit of a face deleted meanwhile can still come back from Milvus; the
use case maps every hit through the catalog (``images_of_faces``), which drops it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..catalog import OutboxCatalog
from ..errors import IndexBusyError, StagingIncompleteError, StorageUnavailableError
from ..filters import EVERYTHING, Scope
from ..records import GalleryRecord, Placed, Progress, collection_key
from ..vectors import IndexDetails, IndexSettings, IndexStatus, RebuildResult, SearchObserver, SearchObservers
from .applier import Applier
from .client import CALL_SECONDS, Milvus
from .collection import FULL_SHARE, HNSW, MIN_EF, Collection, collection_base, collection_name, filtered_ef
from .expression import Layout

log = logging.getLogger(__name__)

KIND = "hnsw"
# Longer than the Bounded staleness of Milvus's default configuration (gracefulTime 5 s), with
# a margin for the clocks of PostgreSQL and Milvus, which this compares.
STRONG_SECONDS = 10.0
COMPACTION_SECONDS = 600.0
REFILL_ROWS = 5_000  # faces per step of a refill: seconds of Milvus inserts, well inside the scan's idle limit
DOWN_SECONDS = 30.0  # after a failure, writes of a serving replica leave Milvus to the background applier


class MilvusIndexes:
    """``index.vectors.VectorIndexes`` over a Milvus server."""

    component = "milvus"

    def __init__(self, catalog: OutboxCatalog, uri: str, settings: IndexSettings, serving: bool = False) -> None:
        """``serving``: this process answers searches, so it also runs the background applier."""
        self.catalog = catalog
        self.settings = settings
        self.layout = Layout.of(settings.filter_keys)
        self.serving = serving
        self.milvus = Milvus(uri)
        self.observers = SearchObservers()
        self._collections: dict[tuple[str, int], Collection] = {}
        self.applier = Applier(catalog, self.collection)

    def collection(self, pack: str, dim: int) -> Collection:
        found = self._collections.get((pack, dim))
        if found is None:
            found = self._collections[pack, dim] = Collection(
                self.milvus, collection_name(self.catalog.namespace, pack, dim, self.layout), dim, self.layout
            )
        return found

    def _collection_of(self, gallery: GalleryRecord) -> Collection:
        """The collection of the gallery's pack: one it holds, or held, a face of."""
        assert gallery.pack is not None and gallery.dim is not None
        return self.collection(gallery.pack, gallery.dim)

    def _caught_up(self, gid: int) -> tuple[GalleryRecord, Progress | None]:
        """The gallery and its progress after applying whatever its outbox holds."""
        gallery = self.catalog.images.gallery(gid)
        if gallery.pack is None or gallery.dim is None:
            return gallery, None
        key = collection_key(gallery.pack, gallery.dim)
        progress = self.catalog.outbox.progress(gid, key)
        if progress.pending:
            self.applier.apply(gid)
            progress = self.catalog.outbox.progress(gid, key)
        return gallery, progress

    def sync(self, gid: int) -> None:
        """Apply the gallery's outbox now; if Milvus is down the write stands (it is committed)
        and the background applier applies it once Milvus is back. A serving replica leaves
        finding out whether Milvus is back to that applier, so its writes do not wait for it."""
        if self.serving and self.milvus.failed_within(DOWN_SECONDS):
            return
        try:
            self.applier.apply(gid)
        except OSError as exc:  # StorageUnavailableError: left to the background applier
            log.warning("gallery %d: change not applied to Milvus yet: %s", gid, exc)

    def observe_searches(self, observer: SearchObserver) -> None:
        self.observers.add(observer)

    def search(self, gid: int, queries: np.ndarray, k: int, scope: Scope = EVERYTHING) -> tuple[np.ndarray, np.ndarray]:
        """A scope is a boolean expression Milvus applies inside its search (``expression.py``),
        on the values each row holds as of the last change the search applied first."""
        with self.observers.timed():
            return self._search(gid, queries, k, scope)

    def neighbours(self, gid: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """HNSW answers a few neighbours as cheaply as a search: the same search, not timed."""
        return self._search(gid, queries, k, EVERYTHING)

    def _search(self, gid: int, queries: np.ndarray, k: int, scope: Scope) -> tuple[np.ndarray, np.ndarray]:
        gallery, progress = self._caught_up(gid)
        if progress is None or not gallery.faces:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        collection = self._collection_of(gallery)
        where = collection.layout.expression(scope)
        if where is None:
            return collection.search(gid, queries, k, strong=_recent(progress))
        most = math.ceil(FULL_SHARE * gallery.images)
        share = self.catalog.images.count_upto(gid, scope, most) / max(1, gallery.images)
        return collection.search(gid, queries, k, strong=_recent(progress), where=where, ef=filtered_ef(share))

    def status(self, gid: int) -> IndexStatus:
        """The gallery in Milvus; ``pending`` is the outbox lag as found, before this catches up."""
        found = self.catalog.images.gallery(gid)
        lag = None
        if found.pack is not None and found.dim is not None:
            lag = self.catalog.outbox.progress(gid, collection_key(found.pack, found.dim))
        gallery, progress = self._caught_up(gid)
        generation = gallery.index_generation  # every replica searches the one collection: nothing to adopt
        if progress is None or lag is None:
            return IndexStatus(
                KIND, vectors=0, rebuilding=False, generation=generation, committed_generation=generation
            )
        collection = self._collection_of(gallery)
        vectors = collection.count(gid, strong=_recent(progress))
        details = IndexDetails(
            dim=collection.dim,
            lists=0,
            nprobe=MIN_EF,
            storage=f"hnsw M={HNSW['M']}",
            trained_on=0,
            churn_since_training=0.0,
            last_rebuild=None,
            seq=progress.applied,
            rebuild_needed=None,
        )
        return IndexStatus(
            KIND, vectors, False, generation, generation, details, lag.pending, lag.oldest_pending_seconds
        )

    def verify(self, gid: int) -> bool:
        gallery, progress = self._caught_up(gid)
        live = self.catalog.log.snapshot(gid).ids.tolist()
        if progress is None:
            return not live
        held = self._collection_of(gallery)
        return held.count(gid) == len(live) and held.present(gid, live) == set(live)

    def ready(self) -> bool:
        """Milvus answers (whether each gallery is caught up is the outbox lag's business)."""
        return self.milvus.call(lambda client: client.list_collections(timeout=5.0)) is not None

    def rebuild_reason(self, gid: int) -> str | None:
        """Milvus builds the index of each sealed segment and compacts deletes by itself; a
        rebuild is due only when the collection lacks faces the catalog holds (a restored
        catalog, a Milvus that lost its data, a collection of an older schema that ``upgrade``
        has not refilled yet), found when the outbox is drained."""
        gallery = self.catalog.images.gallery(gid)
        if gallery.pack is None or gallery.dim is None:
            return None
        if self._others(gallery.pack, gallery.dim):
            return "Milvus holds the gallery in a collection of an older schema or of other typed keys"
        if self.catalog.outbox.progress(gid, collection_key(gallery.pack, gallery.dim)).pending:
            return None  # the applier is still on its way: counts cannot be compared yet
        held = self._collection_of(gallery).count(gid)
        return None if held == gallery.faces else f"Milvus holds {held} of the gallery's {gallery.faces} faces"

    def rebuild(self, gid: int, wait: bool = False, progress: Callable[[str], None] = log.info) -> RebuildResult | None:
        """Milvus's own work, started now: apply the outbox, refill the gallery from a catalog
        scan when Milvus does not hold every face, flush and compact the collection (deleted
        rows dropped, segments merged and re-indexed); moves the index generation."""
        with self.exclusive(gid, wait) as held:
            if not held:
                raise IndexBusyError(f"gallery {gid} is being rebuilt or re-embedded by another process")
            started = time.monotonic()
            gallery, state = self._caught_up(gid)
            if state is None:
                return None
            collection = self._collection_of(gallery)
            assert gallery.pack is not None and gallery.dim is not None  # it has a collection
            if collection.count(gid) != gallery.faces or self._others(gallery.pack, gallery.dim):
                progress(f"gallery {gid}: Milvus lacks faces of the catalog: refilling {collection.name}")
                state = self._refill(gid, collection)
            progress(f"gallery {gid}: compacting Milvus collection {collection.name}")
            outcome = collection.compact(COMPACTION_SECONDS)
            built = time.monotonic()
            committed = self.catalog.log.commit_generation(gid, gallery.index_generation)
            vectors = collection.count(gid)
            progress(f"gallery {gid}: compaction {outcome}, index {collection.index_state().get('state')}")
        return RebuildResult(
            gallery=gid,
            generation=committed.index_generation,
            seq=state.applied,
            kind=KIND,
            vectors=vectors,
            lists=0,
            build_seconds=round(built - started, 2),
            write_seconds=round(time.monotonic() - built, 2),
        )

    def _refill(self, gid: int, collection: Collection) -> Progress:
        """The gallery's rows written again from one catalog scan, then the outbox applied again
        from the scan's seq: what the applier wrote meanwhile is written once more (idempotent)."""
        with self.catalog.log.scan(gid, REFILL_ROWS) as (gallery, batches):
            placed = self._placed(gid)  # read after the scan's snapshot: every face it yields is placed
            collection.drop_gallery(gid)
            for ids, vectors in batches:
                collection.write([], _rows(collection, gid, placed, ids, vectors))
        assert gallery.pack is not None and gallery.dim is not None  # it held the faces just written
        key = collection_key(gallery.pack, gallery.dim)
        with self.catalog.outbox.applying(gid) as applying:  # waits for an applier's batch in flight
            assert applying is not None  # a waiting apply lock is always taken
            applying.record(key, gallery.seq)
        self.applier.apply(gid)
        return self.catalog.outbox.progress(gid, key)

    def request_rebuild(self, gid: int, reason: str) -> bool:
        return False  # Milvus indexes and compacts in the background on its own

    @contextlib.contextmanager
    def exclusive(self, gid: int, wait: bool = False) -> Iterator[bool]:
        with self.catalog.outbox.exclusive(gid, wait) as held:
            yield held

    def swap(self, gid: int, pack: str, dim: int) -> bool:
        """Fill the new pack's collection with the staged vectors, swap in the catalog, then
        replay the removes made since the snapshot and drop the gallery from the old collection."""
        staged = self.catalog.staging.snapshot(gid, pack)
        if staged.missing:
            return False
        old = staged.gallery
        target = self.collection(pack, dim)
        rows = _rows(target, gid, self._placed(gid), staged.ids, staged.vectors.reshape(len(staged.ids), dim))
        target.drop_gallery(gid)
        target.write([], rows)
        self.catalog.outbox.mark(gid, collection_key(pack, dim), old.seq)
        try:
            self.catalog.staging.swap(gid, pack, dim, old.seq, old.index_generation)
        except StagingIncompleteError:
            return False
        self.applier.apply(gid)
        if old.pack is not None and old.dim is not None and (old.pack, old.dim) != (pack, dim):
            self.collection(old.pack, old.dim).drop_gallery(gid)
            self.catalog.outbox.forget(gid, collection_key(old.pack, old.dim))
        return True

    def _placed(self, gid: int) -> dict[int, Placed]:
        """Where every live face of the gallery is, and what its image holds (a row's scalars)."""
        records = self.catalog.images.get_many(gid, self.catalog.images.ids(gid)).values()
        return {face.id: Placed.of(record, face) for record in records for face in record.faces}

    def _others(self, pack: str, dim: int) -> list[Collection]:
        """The collections of ``pack`` of an older schema, or of other typed keys (those of an
        earlier ``FACE_SEARCH_FILTER_KEYS``), which ``upgrade`` empties into the current one."""
        base, current = collection_base(self.catalog.namespace, pack, dim), self.collection(pack, dim).name
        names = self.milvus.call(lambda client: client.list_collections(timeout=CALL_SECONDS))
        return [
            Collection(self.milvus, name, dim)
            for name in sorted(names)
            if name != current and (name == base or name.startswith(base + "_"))
        ]

    def upgrade(self, progress: Callable[[str], None] = log.info) -> int:
        """Move every gallery held by a collection of an older schema or of other typed keys
        into the current one, from the catalog (the rows' fields come from the images' records),
        then drop the other collections; how many galleries were refilled. Each gallery is
        refilled under its exclusive lock, and skipped when the current collection holds it
        already (another replica upgrading at the same time got there first)."""
        refilled, others = 0, dict[str, Collection]()
        of_pack: dict[tuple[str, int], list[Collection]] = {}  # one listing of Milvus's collections a pack
        for gid, gallery in self.catalog.images.galleries().items():
            if gallery.pack is None or gallery.dim is None:
                continue
            pack = (gallery.pack, gallery.dim)
            if pack not in of_pack:
                of_pack[pack] = self._others(*pack)
            found = of_pack[pack]
            if not found:
                continue
            others.update((other.name, other) for other in found)
            with self.exclusive(gid, wait=True):
                current, state = self._caught_up(gid)
                collection = self._collection_of(current)
                if state is not None and collection.count(gid) == current.faces:
                    continue
                progress(f"gallery {gid}: moving {current.faces} faces into {collection.name}")
                self._refill(gid, collection)
                refilled += 1
        for name, other in sorted(others.items()):
            progress(f"dropping {name}, of an older schema or other typed keys")
            other.drop()
        return refilled

    def wait(self, gid: int, timeout: float = 600.0) -> None:
        """Nothing runs in the background per gallery: Milvus's own tasks need no waiting for."""

    def open_all(self) -> None:
        """At start-up of a serving replica: move galleries out of collections of an older schema
        (before answering anything: ``upgrade``; while Milvus is down, the background applier does
        it first thing once it is back), then apply what the outbox holds, in the background."""
        if self.serving:
            try:
                self.upgrade()
            except StorageUnavailableError as exc:
                log.warning("Milvus collections not upgraded yet (%s); the outbox applier will", exc)
                self.applier.first = self.upgrade
            self.applier.start()

    def close(self) -> None:
        self.applier.stop()
        self.milvus.close()


def _rows(
    collection: Collection, gid: int, placed: dict[int, Placed], ids: np.ndarray, vectors: np.ndarray
) -> list[dict]:
    """``collection``'s rows of the faces ``ids`` still placed in an image."""
    return [
        collection.row(face, gid, placed[face], vector)
        for face, vector in zip(ids.tolist(), vectors, strict=True)
        if face in placed
    ]


def _recent(progress: Progress) -> bool:
    """Whether the gallery's last change may still be invisible to a Bounded read."""
    return progress.applied_seconds_ago is not None and progress.applied_seconds_ago < STRONG_SECONDS
