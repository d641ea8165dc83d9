"""The packed copy of a ``pq4`` IVF's lists that its searches run on (see ``VectorIndex.searched``),
and how the next base file of a checkpoint takes it over instead of packing a copy of its own.

A checkpoint's base file holds the faces of the one in use, but for those removed and with
those added since, in lists of the same quantiser: the copy in use needs only those changes,
and each face's label moved to its row in the next codes file. Packing the new file afresh
held both copies at once, for as long as packing took (what that cost at ten million faces:
docs/benchmarks/2026-12-04-large-galleries.md). So the changes are prepared beside the searches
(the copy in use is read-only), and applied in one step while no search runs on it
(``Carry.apply``).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from .ivf_file import ids_by_list, lists_codes
from .refine import CHUNK, RefineCodes, find

REMOVED = -1  # the label of a face the next base no longer holds, until it is removed


def packed_copy(index: faiss.IndexIVFPQ, codes: RefineCodes | None) -> faiss.IndexIVFPQFastScan:
    """The lists of a ``pq4`` IVF packed for FAISS's fast-scan kernels; with a second code, each
    face labelled by its row in ``codes`` rather than by its id."""
    packed = faiss.IndexIVFPQFastScan(index)
    packed.nprobe = index.nprobe
    if codes is not None:
        lists = ids_by_list(packed)
        rows = codes.rows_of_every(np.concatenate(lists))
        for labels, part in zip(lists, np.split(rows, np.cumsum([len(x) for x in lists])[:-1]), strict=True):
            labels[:] = part
    return packed


@dataclass
class Tail:
    """The last blocks of one list with the added faces packed in, written over the list's own."""

    number: int
    size: int  # the list's faces before
    labels: np.ndarray  # the added faces' rows
    at: int  # where ``blocks`` go in the list's codes: its last block's first byte
    blocks: np.ndarray  # packed, the last block's own faces with the added ones after them


@dataclass
class Carry:
    """What turns the packed copy of one base file into that of the next (``prepare``)."""

    relabel: np.ndarray  # each row of the old codes file -> its row in the next, REMOVED if gone
    tails: list[Tail]
    removed: bool  # whether any row is REMOVED

    def apply(self, packed: faiss.IndexIVFPQFastScan) -> None:
        """Change the copy in place; nothing may search it meanwhile. Only copies and a gather:
        the encoding and packing were done by ``prepare``."""
        for labels in ids_by_list(packed):
            labels[:] = self.relabel[labels]
        invlists = packed.invlists
        for tail in self.tails:
            grown = tail.size + len(tail.labels)
            invlists.resize(tail.number, grown)
            faiss.rev_swig_ptr(invlists.get_ids(tail.number), grown)[tail.size :] = tail.labels
            faiss.rev_swig_ptr(invlists.get_codes(tail.number), tail.at + len(tail.blocks))[tail.at :] = tail.blocks
            packed.ntotal += len(tail.labels)
        if self.removed:
            packed.remove_ids(faiss.IDSelectorRange(REMOVED, REMOVED + 1))


def trained_alike(one: faiss.IndexIVF, other: faiss.IndexIVF) -> bool:
    """Whether two IVFs put a face in the same list with the same code: the same centroids and
    codebooks, which a checkpoint keeps and a rebuild trains anew."""
    if one.nlist != other.nlist or one.code_size != other.code_size:
        return False
    centroids = [faiss.vector_to_array(faiss.downcast_index(i.quantizer).codes) for i in (one, other)]
    books = [faiss.vector_to_array(i.pq.centroids) for i in (one, other)]
    return np.array_equal(*centroids) and np.array_equal(*books)


def prepare(packed: faiss.IndexIVFPQFastScan, old: RefineCodes, index: faiss.IndexIVFPQ, new: RefineCodes) -> Carry:
    """The changes from the copy ``packed`` (labelled by rows of ``old``) to one of ``index``
    labelled by rows of ``new``: which rows are gone, where the others move, and the added faces'
    codes (read from ``index``'s lists) packed after each list's last face."""
    relabel, carried = np.empty(old.count, np.int64), np.zeros(new.count, bool)
    for start in range(0, old.count, CHUNK):  # a chunk at a time: the relabelling is the one copy
        row, kept = new.find(np.asarray(old.ids[start : start + CHUNK]))
        relabel[start : start + len(row)] = np.where(kept, row, REMOVED)
        carried[row[kept]] = True
    added = np.asarray(new.ids)[~carried]
    tails = list(_tails(packed, index, new, added)) if len(added) else []
    return Carry(relabel, tails, removed=int(np.count_nonzero(carried)) < old.count)


def _tails(packed: faiss.IndexIVFPQFastScan, index: faiss.IndexIVFPQ, new: RefineCodes, added: np.ndarray):
    """One ``Tail`` per list of ``index`` holding some of the ``added`` ids (ascending)."""
    packer = packed.get_CodePacker()
    per_block, block_bytes = packer.nvec, packer.block_size
    for number, ids in enumerate(ids_by_list(index)):
        hit = find(added, ids)[1]
        if not hit.any():
            continue
        size = packed.invlists.list_size(number)
        codes = np.ascontiguousarray(lists_codes(index.invlists, number)[hit])
        start, whole = size // per_block, -(-(size + len(codes)) // per_block)
        blocks = np.zeros((whole - start) * block_bytes, np.uint8)
        if size % per_block:  # the list's last block, partly filled: its faces stay
            own = faiss.rev_swig_ptr(packed.invlists.get_codes(number), (start + 1) * block_bytes)
            blocks[:block_bytes] = own[start * block_bytes :]
        for offset, code in enumerate(codes, size % per_block):
            packer.pack_1_c(faiss.swig_ptr(code), offset, faiss.swig_ptr(blocks))
        yield Tail(number, size, new.rows(ids[hit]), start * block_bytes, blocks)
