"""A gallery's FAISS index keyed by face id: exact while small, IVF once large.

Inner product on unit vectors is cosine similarity. The exact index answers perfectly
and costs O(n) a query; past a size threshold the gallery moves to an IVF index trained
on its own vectors, whose number of lists grows with the gallery (about 4 * sqrt(n)).
IVF lists hold the vectors as float32 (``flat``), as 8-bit scalar codes (``sq8``), as
product-quantisation codes of one byte per 8 dimensions (``pq``) or of four bits per 4
dimensions (``pq4``, the same 64 bytes for 512-d, scanned with FAISS's fast-scan kernels;
wider vectors keep ``scan_bytes``, so a fused 1024-d face is scanned as fast as a 512-d one,
with four bits per 8 dimensions);
compressed codes only choose candidates, which are then scored with the exact vectors
(``compressed``). A compressed IVF of a large gallery also has a finer second code per face
(``refine``), which ranks thousands of candidates so that only a hundred are scored exactly.

Indexes built here live in memory. Once saved, they are base files: plain FAISS files
that every process memory-maps read-only (``load``), so the pages are shared and a
gallery costs no start-up read.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..records import IdSet
from ..vectors import IndexSettings
from . import packing, refine
from .ivf_file import IvfLayout, ids_by_list, lists_codes, lists_ids, write_ivf
from .refine import RefineCodes, write_codes

FLAT = "flat"
IVF = "ivf"
COMPRESSED = ("sq8", "pq", "pq4")
PQ = ("pq", "pq4")
PACKED = "pq4"  # the lists searched from a packed copy (``searched``), the only ones with a second code

TRAIN_PER_LIST = 40  # k-means sample per list: FAISS asks for >= 39; more costs time, not recall
PQ_TRAINING = 256 * 40  # PQ codebooks of 256 centroids each want as many points as a list does
TRAIN_ITERATIONS = 10  # k-means rounds (FAISS defaults to 25; the centroids barely move after 10)
SELECTOR_BITMAP_BYTES = 64 << 20  # a filter's selector over face ids as a bitmap up to this size, else a list
# the second codes of filters ranked directly, kept per base: 5% of a million faces take 6.4 MB
SCORERS_BYTES = 64 << 20
SELECTORS_HELD = 8  # recent filters' selectors kept per base (a bitmap of its faces each: 125 KB a million)


@dataclass
class IndexState:
    kind: str
    dim: int
    seq: int = 0  # the gallery change the index reflects
    nlist: int = 0
    nprobe: int = 0
    trained_on: int = 0
    removed_since_training: int = 0
    added_since_training: int = 0
    built_at: str | None = None
    generation: int = 0  # the gallery's index generation (in the catalog) this index was built for
    extra: dict = field(default_factory=dict)

    @property
    def storage(self) -> str:
        return self.extra.get("storage", "flat")

    @property
    def refine_bytes(self) -> int:
        """Bytes per face of the second code the IVF was built with (0: none)."""
        return int(self.extra.get("refine_bytes", 0))

    @property
    def scan_codes(self) -> int:
        """Sub-vectors of a ``pq4`` IVF's scan codes (indexes saved before this was kept: one per 4 dims)."""
        return int(self.extra.get("scan_codes", self.dim // 4))

    def churn(self) -> float:
        """How much of an IVF has changed since it was trained, as a share of its training set."""
        if not self.trained_on:
            return 0.0
        return (self.added_since_training + self.removed_since_training) / self.trained_on


MAX_LISTS = 4096


def nlist_for(count: int) -> int:
    """About 4 * sqrt(n) lists, with at least 39 training vectors per list as FAISS asks, and
    at most ``MAX_LISTS`` (reached at about a million faces).

    More lists would need either a scan of more centroids for every vector a rebuild assigns
    (its cost grows as faces x lists) or an approximate graph of the centroids, which at three
    million faces put vectors in lists their queries did not probe and lost recall (measured:
    docs/benchmarks/2026-12-01-large-galleries.md). Past the cap the lists grow instead, and a
    query scans nprobe / 4096 of the gallery's codes.
    """
    return max(1, min(int(4 * math.sqrt(count)), count // 39, MAX_LISTS))


def training_size(count: int, storage: str) -> int:
    """How many vectors to train an IVF of ``count`` on: enough for k-means of its lists (and
    of the PQ codebooks), fewer than all of a large gallery, which would cost minutes more
    and move the centroids very little."""
    wanted = nlist_for(count) * TRAIN_PER_LIST
    return min(count, max(wanted, PQ_TRAINING) if storage in PQ else wanted)


def refine_bytes_for(count: int, dim: int, settings: IndexSettings) -> int:
    """Bytes of the second code an IVF of ``count`` faces is built with: only for ``pq4`` lists,
    whose packed copy in memory carries each face's row in the codes file (see ``searched``);
    none for a setting that does not divide the dimension, nor for an IVF too small to train
    8-bit codebooks on (it re-ranks every candidate exactly, which costs little at that size)."""
    code_bytes = settings.refine_bytes
    if not code_bytes or dim % code_bytes or settings.storage != PACKED:
        return 0
    return code_bytes if training_size(count, settings.storage) >= refine.MIN_TRAINING else 0


def scan_codes(dim: int, settings: IndexSettings) -> int:
    """Sub-vectors of a ``pq4`` IVF's codes (half a byte each): one per 4 dimensions, but no more
    than ``scan_bytes`` a face, which the scan's time follows (the bytes it reads per query)."""
    wanted = min(dim // 4, 2 * settings.scan_bytes)
    return wanted if wanted and dim % wanted == 0 else dim // 4


def training_sample(vectors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """A random subset of ``size`` vectors (all of them when there are fewer)."""
    if len(vectors) <= size:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    chosen = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
    return np.ascontiguousarray(vectors[chosen], dtype=np.float32)


def _ivf(dim: int, nlist: int, storage: str, subvectors: int) -> faiss.IndexIVF:
    """An untrained IVF whose coarse quantizer scans every centroid (exact); ``subvectors`` of a
    ``pq4`` IVF's codes."""
    quantizer = faiss.IndexFlatIP(dim)
    if storage == "sq8":
        return faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    if storage == "pq":
        return faiss.IndexIVFPQ(quantizer, dim, nlist, dim // 8, 8, faiss.METRIC_INNER_PRODUCT)
    if storage == "pq4":
        return faiss.IndexIVFPQ(quantizer, dim, nlist, subvectors, 4, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)


def read_through(path: Path, chunk: int = 4 << 20) -> None:
    """Read a file once, sequentially, so that its pages are in the page cache. Only a speed-up:
    a file a newer checkpoint has already unlinked (still mapped, so still searchable) is left
    to the scan's page faults."""
    buffer = bytearray(chunk)
    try:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
    except OSError:
        return


def add_vectors(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add to a FAISS index, as the contiguous float32 and int64 it wants."""
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))


@dataclass
class HeldSelector:
    """A recent filter's selector, kept with its set while the base's rows it allows stay the
    same: what the selector needs to outlive it, and once asked for, the rows and the scorer."""

    allowed: IdSet
    selector: faiss.IDSelector
    keep: Any
    rows: np.ndarray | None = None
    scorer: faiss.IndexPQ | None = None


class VectorIndex:
    def __init__(self, index: faiss.Index, state: IndexState, layout: IvfLayout | None = None) -> None:
        self.index = index
        self.state = state
        self.layout = layout  # an IVF built here: its empty trained form, for writing it as a base file
        self.unread: Path | None = None  # a mapped flat file not yet read through (see ``load``)
        self.packed: faiss.IndexIVFPQFastScan | None = None  # what a ``pq4`` IVF is searched with
        self.codes: RefineCodes | None = None  # the second code of a mapped base file
        self.coding: refine.Coding | None = None  # the second code of an IVF built here
        self._selectors: OrderedDict[int, HeldSelector] = OrderedDict()  # recent filters', by the id of their set
        self._selectors_lock = threading.Lock()

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), IndexState(kind=FLAT, dim=dim))

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray, settings: IndexSettings) -> VectorIndex:
        """The right index for this many vectors, holding all of them."""
        if len(ids) < settings.ivf_threshold:
            built = cls.empty(dim)
        else:
            sample = training_sample(vectors, training_size(len(ids), settings.storage))
            built = cls.trained(dim, sample, len(ids), settings)
        built.add(ids, vectors)
        built.state.added_since_training = 0
        return built

    @classmethod
    def trained(cls, dim: int, sample: np.ndarray, count: int, settings: IndexSettings) -> VectorIndex:
        """An empty IVF for ``count`` vectors whose lists are k-means centroids of ``sample``."""
        nlist = nlist_for(count)
        index = _ivf(dim, nlist, settings.storage, scan_codes(dim, settings))
        index.cp.niter = TRAIN_ITERATIONS
        if settings.storage in PQ:  # codebooks: as many points per centroid as a list gets
            index.pq.cp.niter = TRAIN_ITERATIONS
            index.pq.cp.max_points_per_centroid = TRAIN_PER_LIST
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = settings.nprobe  # before the layout is taken: the base file's header holds it
        state = IndexState(kind=IVF, dim=dim, nlist=nlist, nprobe=settings.nprobe, trained_on=count)
        state.extra["storage"] = settings.storage
        if settings.storage == PACKED:
            state.extra["scan_codes"] = index.pq.M
        built = cls(index, state, IvfLayout.of(index))
        code_bytes = refine_bytes_for(count, dim, settings)
        if code_bytes:
            built.coding = refine.Coding(refine.train(sample, code_bytes))
            state.extra["refine_bytes"] = code_bytes
        return built

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def compressed(self) -> bool:
        """Its scores are approximate: candidates must be scored again with the exact vectors."""
        return self.state.kind == IVF and self.state.storage in COMPRESSED

    def set_nprobe(self, nprobe: int) -> None:
        """The setting wins over the value saved with the index: changing it needs no rebuild.
        It is capped at the number of lists: FAISS's fast-scan search asked for more lists than
        there are answers from lists that do not exist, mostly wrongly."""
        nprobe = min(nprobe, self.state.nlist) if self.state.nlist else nprobe
        if self.state.kind == IVF:
            self.index.nprobe = nprobe
            self.state.nprobe = nprobe
            if self.packed is not None:
                self.packed.nprobe = nprobe

    def searched(self) -> faiss.Index:
        """The index searches run on. FAISS's fast-scan kernels read 4-bit codes packed in
        blocks of 32 faces, a layout of their own, so a ``pq4`` IVF's lists are packed once, into
        memory (the lists' size again: 72 B/face with the ids), while the lists stay mapped in the
        file's layout, which checkpoints stream from. Scanning them unpacked costs many times
        more.

        With a second code, the packed copy labels each face by its row in the codes file rather
        than by its id: ranking thousands of candidates then reads their codes by index, where
        finding each id among a large file's ids cost more than scoring them (measured:
        docs/benchmarks/2026-12-02-second-code.md). Its searches answer rows (``labels``), which
        the codes map back to ids."""
        if self.state.kind != IVF or self.state.storage != PACKED:
            return self.index
        if self.packed is None:
            self.packed = packing.packed_copy(self.index, self.codes)
        return self.packed

    def carry(self, previous: VectorIndex) -> Callable[[], None] | None:
        """How this base takes over ``previous``'s packed copy rather than packing its own, when
        it is a checkpoint of it (``index.faiss.packing``): the step that changes the copy,
        prepared here, to run while nothing searches ``previous``. None when it cannot: either
        has no second code (only a ``pq4`` IVF has one, and its rows say which faces changed),
        ``previous`` has no packed copy, or this one was trained anew."""
        old = previous.packed
        if old is None or self.codes is None or previous.codes is None:
            return None
        if not packing.trained_alike(self.index, previous.index):
            return None
        carry = packing.prepare(old, previous.codes, self.index, self.codes)

        def apply() -> None:
            carry.apply(old)
            old.nprobe = self.index.nprobe
            self.packed, previous.packed = old, None

        return apply

    def shortlist(
        self, queries: np.ndarray, keep: int, scanned: int, exclude: faiss.IDSelector | None, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The face ids of each query's ``keep`` best candidates of a compressed IVF, -1 padded,
        with their approximate scores: the scan's own best, or with a second code, the best by
        that code of the ``scanned`` the scan returns (as rows, see ``searched``)."""
        if self.codes is None:
            scores, ids = self.search(queries, keep, exclude, nprobe)
            return ids, scores
        _, rows = self.search(queries, max(keep, scanned), exclude, nprobe)
        return self.codes.ranked(queries, rows, keep)

    def labels(self, ids: np.ndarray) -> np.ndarray:
        """What its searches call these faces of its own: their rows in the codes file when it has
        a second code (see ``searched``), else their ids."""
        return self.codes.rows(ids) if self.codes is not None else np.asarray(ids, np.int64)

    @property
    def packed_bytes(self) -> int:
        """Memory held beside the mapped file: the packed copy of a ``pq4`` IVF's lists."""
        return 0 if self.packed is None else self.count * (self.index.code_size + 8)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            add_vectors(self.index, ids, vectors)
            if self.coding is not None:
                self.coding.add(ids, vectors)
            self.state.added_since_training += len(ids)
            self.packed = None

    def selector(self, allowed: IdSet) -> tuple[faiss.IDSelector, Any]:
        """A selector of the ``allowed`` faces by what this index's searches call them
        (``labels``), and what must outlive it (see ``_selector``). The catalog hands the same
        set object to every search with the same filter while the gallery is unchanged
        (``index.lmdb.attributes.Selections``), so the last few are kept with their set. A write
        to the gallery makes the catalog resolve the filter anew; when the rows it allows here
        are the same (the write added faces, which the overlay holds, or changed others), the
        held selector, rows and codes go on serving, under the new set."""
        held = self._held(allowed)
        if held is not None:
            return held.selector, held.keep
        selector, keep = self._selector(allowed)
        with self._selectors_lock:
            held_rows = self._selectors.items() if self.codes is not None else ()
            same = next((key for key, other in held_rows if np.array_equal(other.keep, keep)), None)
            if same is None:
                entry = HeldSelector(allowed, selector, keep)
            else:
                entry = replace(self._selectors.pop(same), allowed=allowed)
            self._selectors[id(allowed)] = entry
            while len(self._selectors) > SELECTORS_HELD:
                self._selectors.popitem(last=False)
        return entry.selector, entry.keep

    def selected_rows(self, allowed: IdSet) -> np.ndarray:
        """The rows of the codes file the ``allowed`` faces are at, ascending."""
        assert self.codes is not None
        held = self._held(allowed)
        if held is not None and held.rows is not None:
            return held.rows
        bits = held.keep if held is not None else self._selector(allowed)[1]
        rows = np.flatnonzero(np.unpackbits(bits, count=self.codes.count, bitorder="little"))
        if held is not None:
            held.rows = rows
        return rows

    def selected_scorer(self, allowed: IdSet) -> faiss.IndexPQ:
        """A scorer of the ``allowed`` faces' second codes, gathered once (``RefineCodes.scorer``)
        and kept with the filter's selector while ``SCORERS_BYTES`` of them allow: a filter
        ranked directly would otherwise gather its faces' codes from all over the codes file for
        every search."""
        assert self.codes is not None
        rows = self.selected_rows(allowed)
        held = self._held(allowed)
        if held is not None and held.scorer is not None:
            return held.scorer
        scorer = self.codes.scorer(rows)
        if held is not None:
            with self._selectors_lock:
                size = len(rows) * self.codes.code_bytes
                if self._selectors.get(id(allowed)) is held and self._scorers_bytes() + size <= SCORERS_BYTES:
                    held.scorer = scorer
        return scorer

    def _scorers_bytes(self) -> int:
        scorers = [held.scorer for held in self._selectors.values() if held.scorer is not None]
        return sum(scorer.ntotal * scorer.code_size for scorer in scorers)

    def _held(self, allowed: IdSet) -> HeldSelector | None:
        with self._selectors_lock:
            held = self._selectors.get(id(allowed))
            if held is None or held.allowed is not allowed:  # the id of a set no longer held, reused
                return None
            self._selectors.move_to_end(id(allowed))
            return held

    def _selector(self, allowed: IdSet) -> tuple[faiss.IDSelector, Any]:
        """A bitmap over the codes file's rows (one pass over its ids, ascending), else over face
        ids (the set's own chunks laid end to end), or for ids too large for that, the list of
        them; and what must outlive the selector."""
        if self.codes is not None:
            bits = np.packbits(allowed.contains(self.codes.ids), bitorder="little")
            return faiss.IDSelectorBitmap(self.codes.count, faiss.swig_ptr(bits)), bits
        laid = allowed.bitmap(SELECTOR_BITMAP_BYTES)
        if laid is None:
            ids = allowed.ids()
            return faiss.IDSelectorBatch(ids), ids
        return faiss.IDSelectorBitmap(len(laid) * 8, faiss.swig_ptr(laid)), laid

    def search(
        self, queries: np.ndarray, k: int, exclude: faiss.IDSelector | None = None, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the ``k`` nearest faces per query, leaving out the ids ``exclude``
        selects (despite its name: only those it selects are searched); id -1 pads missing hits.
        ``nprobe``: lists to scan instead of the index's own."""
        k = max(1, min(k, self.count))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.unread is not None:
            path, self.unread = self.unread, None
            read_through(path)
        index = self.searched()
        if exclude is None and nprobe is None:
            return index.search(queries, k)
        if self.state.kind == IVF:
            params = faiss.SearchParametersIVF(sel=exclude, nprobe=min(nprobe or self.index.nprobe, self.index.nlist))
        else:
            params = faiss.SearchParameters(sel=exclude)
        return index.search(queries, k, params=params)

    def ids(self) -> np.ndarray:
        """Every id in the index."""
        if self.state.kind == FLAT:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return np.concatenate(ids_by_list(self.index))

    def vectors(self) -> np.ndarray:
        """Every vector of an exact index, in the order of ``ids``."""
        flat = faiss.downcast_index(self.index.index)
        return faiss.rev_swig_ptr(flat.get_xb(), self.count * self.state.dim).reshape(self.count, self.state.dim)

    def write_base(self, path: Path) -> int | None:
        """Write the index as a base file, and its second code beside it (at ``codes_path``); for
        an IVF, returns where its inverted lists begin."""
        if self.layout is None:
            self.save(path)
            return None
        if self.coding is not None:
            write_codes(codes_path(path), self.coding.coder, self.count, self.coding.chunks())
        invlists = self.index.invlists
        sizes = np.array([invlists.list_size(i) for i in range(self.index.nlist)], dtype=np.uint64)
        return write_ivf(path, self.layout, sizes, lambda i: (lists_codes(invlists, i), lists_ids(invlists, i)))

    def save(self, path: Path) -> None:
        """Write the index as a plain FAISS file, atomically (temp file, fsync, rename).

        FAISS streams into the file through a callback, so a large index is never held
        twice in memory as serialised bytes.
        """
        tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
        with open(tmp, "wb") as handle:
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(handle.write))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, state: IndexState, codes: Path | None = None) -> VectorIndex:
        """A base file, memory-mapped read-only: its pages are shared by every process that maps it.

        A flat index is scanned whole by every search, so its file is read through once before
        its first search (not at start-up, which opens every gallery): the scan's page faults
        read a cold file a page at a time, several times slower than one sequential read
        (measured: docs/benchmarks/2026-12-01-large-galleries.md). An IVF's lists are read
        as queries probe them, but for a ``pq4`` IVF's, packed by whoever makes it the gallery's
        index (see ``searched`` and ``carry``), not by its first search. The second code
        (``codes``) is read through here, at start-up: a search looks up thousands of codes
        scattered over the file, each a page fault of its own on a cold file.
        """
        flags = faiss.IO_FLAG_MMAP if state.kind == IVF else faiss.IO_FLAG_MMAP_IFC
        loaded = cls(faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY), state)
        if state.kind != IVF:
            loaded.unread = path
        if codes is not None and state.storage == PACKED:
            loaded.codes = RefineCodes.open(codes)
            read_through(codes)
        loaded.set_nprobe(state.nprobe)
        return loaded

    @classmethod
    def load_legacy(cls, path: Path) -> VectorIndex:
        """A checkpoint written before base files (a JSON header, then the index), read into memory."""
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(4), "big")
            state = IndexState(**json.loads(handle.read(length)))
            index = faiss.read_index(faiss.PyCallbackIOReader(handle.read))
        if state.kind == IVF:
            index.nprobe = state.nprobe
        return cls(index, state)

    def state_dict(self) -> dict:
        return asdict(self.state)


def codes_path(base: Path) -> Path:
    """Where a base file's second code lives: beside it, the same name but the suffix."""
    return base.with_suffix(".codes")
