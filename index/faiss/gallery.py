"""One gallery's index in one process: the base file it maps, and the overlay on top.

Searching asks both and merges the answers. When the base holds compressed codes, its
answers are only candidates: a large base's second code ranks them, and the best are scored
again with the faces' exact vectors, read from the catalog, so every score returned is an
exact cosine. A checkpoint (``fold``) writes
the base and the overlay into the next base file; the process then maps that file and
keeps as overlay only what changed after it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from ..locks import ReadWriteLock
from ..records import ChangeBatch, IdSet
from ..vectors import IndexSettings
from .files import IndexFiles, Pointer
from .ivf_file import IvfLayout, lists_codes, lists_ids, write_ivf
from .overlay import Overlay
from .refine import best_of, write_codes
from .vector_index import FLAT, IndexState, VectorIndex, add_vectors, codes_path

Exact = Callable[[list[int]], dict[int, np.ndarray]]  # face ids -> their exact vectors (live faces only)


@dataclass
class GalleryIndex:
    state: IndexState  # the base's state, with the overlay's changes counted as churn
    generation: int
    base: VectorIndex | None = None
    base_file: Path | None = None
    lists_offset: int | None = None
    overlay: Overlay = field(init=False)
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    retired: bool = field(default=False, init=False)  # replaced, its packed copy taken by the next

    def __post_init__(self) -> None:
        self.overlay = Overlay(self.state.dim)

    @property
    def seq(self) -> int:
        return self.state.seq

    @property
    def base_seq(self) -> int:
        return 0 if self.base is None else self.base.state.seq

    @property
    def count(self) -> int:
        base = self.base.count if self.base is not None else 0
        return base - len(self.overlay.removed) + self.overlay.added_count

    @property
    def nbytes(self) -> int:
        """What it holds in memory, counting a mapped base file as if every page were resident."""
        mapped = self.base_file.stat().st_size if self.base_file is not None and self.base_file.exists() else 0
        packed = self.base.packed_bytes if self.base is not None else 0
        codes = self.base.codes.nbytes if self.base is not None and self.base.codes is not None else 0
        return mapped + packed + codes + self.overlay.nbytes

    def apply(self, batch: ChangeBatch) -> int:
        """Take in logged changes in order; returns how many faces they removed."""
        removed = {c.face for c in batch.changes if not c.is_add}
        added = [c.face for c in batch.changes if c.is_add and c.face in batch.vectors and c.face not in removed]
        added_here = {c.face for c in batch.changes if c.is_add}
        self.overlay.remove(sorted(removed - added_here))
        if added:
            self.overlay.add(np.array(added, np.int64), np.stack([batch.vectors[f] for f in added]))
        if batch.changes:
            self.state.seq = batch.changes[-1].seq
        self.state.added_since_training += len(added)
        self.state.removed_since_training += len(removed - added_here)
        return len(removed)

    def ids(self) -> np.ndarray:
        base = self.base.ids() if self.base is not None else np.zeros(0, np.int64)
        kept = base[~np.isin(base, np.fromiter(self.overlay.removed, np.int64))] if self.overlay.removed else base
        return np.concatenate([kept, self.overlay.added_vectors()[0]])

    def search(
        self,
        queries: np.ndarray,
        k: int,
        settings: IndexSettings,
        exact: Exact,
        allowed: IdSet | None = None,
        near: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, face ids) of the ``k`` nearest faces per query, best first, -1 padded; with
        ``allowed``, of the nearest among those faces only (``within``).

        A compressed base's scan returns ``candidates_for`` its size when it has a second code to
        rank them by, else ``settings.rerank``; ``settings.rerank`` are scored exactly. ``near``:
        only each query's nearest few are wanted (a grouping run's neighbours): the scan probes
        ``neighbour_nprobe`` lists and returns ``neighbour_candidates``, and the ``k`` best by the
        second code (without one, ``NEAR_RERANK`` times ``k`` of the scan's best) are scored exactly."""
        if allowed is not None:
            return self.within(queries, k, settings, exact, allowed)
        parts = [self.overlay.search(queries, k)]
        base = self.base
        if base is not None and base.count > len(self.overlay.removed):
            exclude = self.overlay.exclusion(base.labels)
            nprobe = settings.neighbour_nprobe if near else None
            if not base.compressed:
                parts.append(base.search(queries, k, exclude, nprobe))
            else:
                # near: the second code ranks a face's neighbours well (its scores are off by a few
                # hundredths: too far for a link's threshold, so they are scored exactly); the 4-bit
                # codes alone rank them worse, so more of them are scored
                keep = (k if base.codes is not None else NEAR_RERANK * k) if near else max(k, settings.rerank)
                scanned = settings.neighbour_candidates if near else _scanned(base, settings)
                ids, _ = base.shortlist(queries, keep, scanned, exclude, nprobe)
                parts.append(_rescored(queries, ids, exact))
        return _merged(parts, k)

    def within(
        self, queries: np.ndarray, k: int, settings: IndexSettings, exact: Exact, allowed: IdSet
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest of the ``allowed`` faces (live faces, as the catalog just said; those
        the base still holds but the overlay removed are not among them): the filter is applied
        inside every stage, never to the top-k after it.

        - at most ``settings.rerank`` faces: an exact search over them alone, their vectors read
          from the catalog (what the re-rank would read anyway);
        - an IVF scans more lists the fewer faces pass (``widened``: all the lists at the extreme);
        - a base with a second code: the codes of the allowed faces ranked directly (a scan of
          their rows alone) when that costs less than that wider IVF scan (``DIRECT_COST``), else
          the IVF scan with the allowed rows as its selector (and the direct ranking after all if
          the scan found fewer than ``k``); the best ``filtered_rerank`` of either
          (``settings.rerank``, more in a gallery past ``RERANK_AT``) are scored exactly;
        - any other base: its search with the allowed faces as selector;
        - the overlay: an exact search with the allowed faces as selector.
        """
        if allowed.count <= settings.rerank:
            return _exact(queries, allowed.ids(), k, exact)
        parts = [self.overlay.search(queries, k, allowed)]
        base = self.base
        if base is not None and base.count:
            selector, keep_alive = base.selector(allowed)
            share = min(1.0, allowed.count / base.count)

            def lists(returned: int) -> int:  # for a scan that returns this many faces; 0: not an IVF
                return base.state.nprobe and widened(base.state, base.count, share, returned)

            if not base.compressed:
                parts.append(base.search(queries, k, selector, lists(k) or None))
            elif base.codes is None:
                keep = max(k, settings.rerank)
                ids, _ = base.shortlist(queries, keep, 0, selector, lists(keep))
                parts.append(_rescored(queries, ids, exact))
            else:
                wider = lists(_scanned(base, settings))
                parts.append(_ranked_within(queries, k, settings, exact, base, allowed, selector, wider))
            del keep_alive
        return _merged(parts, k)

    def fold(self, files: IndexFiles, gid: int) -> Pointer:
        """Write base and overlay as the next base file (at this index's seq) and its pointer.

        Called on a copy taken under the read lock (``frozen``), outside any lock: adds and
        searches go on meanwhile, on the live index.
        """
        path = files.base_path(gid, self.generation, self.seq)
        state = copy.deepcopy(self.state)
        codes = None
        if self.base is None or self.base.state.kind == FLAT:
            offset = self._folded_flat().write_base(path)
        else:
            offset = self._fold_lists(path)
            if self.base.codes is not None:
                codes = self._fold_codes(codes_path(path))
        state.generation = self.generation
        return Pointer(path.name, asdict(state), offset, codes)

    def _folded_flat(self) -> VectorIndex:
        folded = VectorIndex.empty(self.state.dim)
        if self.base is not None:
            ids = self.base.ids()
            keep = ~np.isin(ids, np.fromiter(self.overlay.removed, np.int64)) if self.overlay.removed else slice(None)
            folded.add(ids[keep], self.base.vectors()[keep])
        added, vectors = self.overlay.added_vectors()
        if len(added):
            folded.add(added, vectors)
        return folded

    def _fold_lists(self, path: Path) -> int:
        """Stream the merged inverted lists: the base's (minus removed faces), then the overlay's
        faces encoded with the base's own quantizer and codes, one list at a time."""
        base = self.base.index
        layout = IvfLayout.read(self.base_file, self.lists_offset, base.nlist, base.code_size)
        delta = layout.empty()
        added, vectors = self.overlay.added_vectors()
        if len(added):
            add_vectors(delta, added, vectors)
        removed = np.fromiter(self.overlay.removed, np.int64, len(self.overlay.removed))

        def kept(number: int) -> np.ndarray:
            return ~np.isin(lists_ids(base.invlists, number), removed)

        sizes = np.array([int(kept(i).sum()) + delta.invlists.list_size(i) for i in range(base.nlist)], dtype=np.uint64)

        def merged(number: int) -> tuple[np.ndarray, np.ndarray]:
            keep = kept(number)
            codes = [lists_codes(base.invlists, number)[keep], lists_codes(delta.invlists, number)]
            ids = [lists_ids(base.invlists, number)[keep], lists_ids(delta.invlists, number)]
            return np.concatenate(codes), np.concatenate(ids)

        return write_ivf(path, layout, sizes, merged)

    def _fold_codes(self, path: Path) -> str:
        """Stream the next second-code file: the base's codes (minus removed faces) and the
        overlay's faces encoded with the base's own quantiser; returns its name."""
        codes = self.base.codes
        added, vectors = self.overlay.added_vectors()
        removed = np.fromiter(self.overlay.removed, np.int64, len(self.overlay.removed))
        count, chunks = codes.merged(removed, added, codes.encode(vectors))
        write_codes(path, codes.coder, count, chunks)
        return path.name

    def frozen(self) -> GalleryIndex:
        """A copy to fold from: the base is shared (it never changes), the overlay copied."""
        twin = GalleryIndex(copy.deepcopy(self.state), self.generation, self.base, self.base_file, self.lists_offset)
        added, vectors = self.overlay.added_vectors()
        twin.overlay.add(added, vectors)
        twin.overlay.removed = set(self.overlay.removed)
        return twin


# A filter that keeps a share s of the faces scans nprobe / s**WIDEN lists. Its nearest allowed
# faces are the nearest faces of a sparser gallery: a little farther than the unfiltered ones, in
# more lists, but not 1/s times as many, as long as the unfiltered scan meets many more faces than
# it returns (at least DEEP times: every default gallery past the IVF threshold, 18 times at 50,000
# faces, 80 at a million), so that the lists nearest a query hold its neighbours with room to
# spare. nprobe / s (as many allowed faces met as the unfiltered scan meets faces) scanned twice
# the lists at 25% for the same recall at a million faces, nprobe / s**0.6 kept it there; a
# shallower scan (the contract test's small, tightly grouped gallery, tests/contract/
# test_filtered_search.py, meets 1.6 faces per face it returns) lost recall at a fifth below
# nprobe / s**0.75, so there the filter keeps nprobe / s. Measured: the issue-29perf run
# and "A widening by the scan's depth" of docs/benchmarks/2026-12-07-filters.md. Past RERANK_AT
# faces the filter scans nprobe / s too (see ``crowding``).
WIDEN = 0.6
DEEP = 8
NEAR_RERANK = 4  # a grouping run's neighbours: this many times k candidates are scored exactly
# What ranking one face's second code directly costs (gathering its 128 bytes, 8-bit lookups),
# in faces of a pq4 IVF scan (4-bit codes, 32 at a time in registers): a filter that leaves
# fewer than 1/DIRECT_COST of the faces the wider scan would read is ranked directly (the
# filters run of docs/benchmarks/2026-12-07-filters.md measures both sides of it).
DIRECT_COST = 10
FEWEST_CANDIDATES = 1600  # what a million faces need: docs/benchmarks/2026-12-02-second-code.md (1M sweep)
CANDIDATES_AT = 10_000_000  # the gallery size ``IndexSettings.candidates`` is set for
DIMS_PER_BYTE = 4  # and the second code's dimensions per byte it is set for (buffalo_s: 512 in 128 bytes)
# The strangers that the codes rank among a person's true neighbours grow with the gallery they
# are drawn from, as the scan's candidates do (``candidates_for``), and a filter's nearest allowed
# faces lie deeper among them than the unfiltered nearest: so a filtered search digs deeper the
# larger the gallery past RERANK_AT faces (``crowding``). Below it, every filter searches as
# measured at a million faces; at ten million, each way of digging deeper alone fell short of the
# recall the filters the service scans need, and only the three together reached it
# (docs/benchmarks/2026-12-07-filters.md, docs/benchmarks/2026-12-08-filters-10m.md).
RERANK_AT = CANDIDATES_AT // 4


def candidates_for(count: int, dim: int, refine_bytes: int, settings: IndexSettings) -> int:
    """How many faces the scan of a base of ``count`` ``dim``-d faces returns for its second code
    (``refine_bytes`` a face) to rank.

    With the lists capped, a query's scan reads a share of the gallery, so the strangers that
    crowd a person's true neighbours grow with its size, and the candidates with them: as many
    at ten million faces reach the recall that fewer reach at a million, and fewer cost less to
    rank (the sweeps: docs/benchmarks/2026-12-02-second-code.md). A second code whose bytes each
    stand for more dimensions ranks less finely, so the candidates grow with its ``coarseness``."""
    most = round(settings.candidates * coarseness(dim, refine_bytes))
    return min(most, max(FEWEST_CANDIDATES, most * count // CANDIDATES_AT))


def coarseness(dim: int, refine_bytes: int) -> float:
    """The dimensions each byte of a second code stands for, against those ``IndexSettings.candidates``
    is set for (``DIMS_PER_BYTE``), and never below 1: the fused pack's 1024-d faces in 128 bytes
    needed twice buffalo_s's candidates for its recall at ten million faces
    (docs/benchmarks/2026-12-07-fused-pack-10m.md)."""
    return max(1.0, dim / refine_bytes / DIMS_PER_BYTE) if refine_bytes else 1.0


def candidates_setting(candidates: int, count: int, dim: int, refine_bytes: int) -> int:
    """The ``IndexSettings.candidates`` that makes ``candidates_for`` a base of ``count`` ``dim``-d
    faces (``refine_bytes`` of second code each) return ``candidates``: its inverse above the floor,
    for a benchmark that sweeps what the scan returns."""
    return math.ceil(max(candidates, -(-candidates * CANDIDATES_AT // count)) / coarseness(dim, refine_bytes))


def widened(state: IndexState, count: int, share: float, returned: int) -> int:
    """The lists an IVF of ``count`` faces scans for a filter that keeps ``share`` of them, its
    scan returning ``returned`` faces: ``nprobe / share**WIDEN`` where the unfiltered scan meets
    at least ``DEEP`` faces per face it returns in a gallery no larger than ``RERANK_AT``, else
    ``nprobe / share`` (see ``WIDEN`` and ``crowding``)."""
    deep = state.nprobe * count >= DEEP * returned * state.nlist and crowding(count) == 1.0
    return min(state.nlist, math.ceil(state.nprobe / share ** (WIDEN if deep else 1.0)))


def _scanned(base: VectorIndex, settings: IndexSettings) -> int:
    return candidates_for(base.count, base.state.dim, base.state.refine_bytes, settings)


def crowding(count: int) -> float:
    """How many times ``RERANK_AT`` a base of ``count`` faces holds, never below 1: a filtered search
    past it re-ranks exactly that many times ``IndexSettings.rerank`` of its best faces by the
    second code (``filtered_rerank``), a scan with a filter returns its square root times the
    candidates (``filtered_candidates``) and reads ``nprobe / share`` lists (``widened``)."""
    return max(1.0, count / RERANK_AT)


def filtered_rerank(count: int, k: int, settings: IndexSettings) -> int:
    """How many of a filter's best faces by their second code, in a base of ``count`` faces, are
    scored exactly (see ``crowding``)."""
    return max(k, math.ceil(settings.rerank * crowding(count)))


def filtered_candidates(base: VectorIndex, settings: IndexSettings) -> int:
    """How many faces a base's IVF scan with a filter returns for its second code to rank."""
    return math.ceil(_scanned(base, settings) * math.sqrt(crowding(base.count)))


def _ranked_within(
    queries: np.ndarray,
    k: int,
    settings: IndexSettings,
    exact: Exact,
    base: VectorIndex,
    allowed: IdSet,
    selector: faiss.IDSelector,
    wider: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A second-code base's nearest ``allowed`` faces (``selector``: its rows of them): a scan of
    those rows' codes, or the IVF scan with them as selector over ``wider`` lists, whichever
    costs less (see ``GalleryIndex.within``)."""
    assert base.codes is not None
    rows = base.selected_rows(allowed)
    count = len(rows)
    scanned = wider / max(base.state.nlist, 1) * base.count  # faces the wider IVF scan reads
    keep = filtered_rerank(base.count, k, settings)
    if count * DIRECT_COST > scanned:
        ids, _ = base.shortlist(queries, keep, filtered_candidates(base, settings), selector, wider)
        found = _rescored(queries, ids, exact)
        if np.all((found[1] >= 0).sum(axis=1) >= min(k, count)):
            return found
    ranked = np.full((len(queries), keep), -1, np.int64)
    scorer = base.selected_scorer(allowed)
    for number, query in enumerate(queries):
        best, _ = best_of(scorer, rows, query, keep)
        ranked[number, : len(best)] = base.codes.ids[best]
    return _rescored(queries, ranked, exact)


def _merged(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` per query of several (scores, ids) answers, best first."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    ids = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(ids, order, 1)


def _exact(queries: np.ndarray, ids: np.ndarray, k: int, exact: Exact) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of ``ids`` per query by their exact vectors, read from the catalog."""
    return _merged([_rescored(queries, np.broadcast_to(ids, (len(queries), len(ids))), exact)], k)


def _rescored(queries: np.ndarray, ids: np.ndarray, exact: Exact) -> tuple[np.ndarray, np.ndarray]:
    """The candidates' exact cosines; a candidate whose vector is gone (deleted) drops out."""
    wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
    found = exact(wanted)
    if not found:
        return np.full(ids.shape, -np.inf, np.float32), np.full(ids.shape, -1, np.int64)
    known = np.array(sorted(found), np.int64)
    matrix = np.stack([found[int(i)] for i in known])
    position = np.searchsorted(known, ids)
    present = (ids >= 0) & (position < len(known)) & (known[np.minimum(position, len(known) - 1)] == ids)
    scores = np.einsum("qd,qkd->qk", queries, matrix[np.minimum(position, len(known) - 1)])
    return np.where(present, scores, -np.inf).astype(np.float32), np.where(present, ids, -1)
