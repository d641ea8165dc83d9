"""Writing an IVF base file one inverted list at a time.

A checkpoint of a large gallery merges the mapped base file with the changes made since;
built in memory first, that merge would hold the index twice. So the file is written the
way FAISS lays it out (``write_index`` of an ``ArrayInvertedLists``: the index without its
lists, then ``ilar``, the list sizes and each list's codes and ids), a list at a time, and
FAISS reads it back, memory-mapped, as if it had written it itself (a test compares the
bytes with ``write_index``'s).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

# An empty ArrayInvertedLists is serialised as "ilar", nlist, code_size, "sprs" and no pairs.
_EMPTY_LISTS = struct.Struct("<4sQQ4sQ")

Lists = Callable[[int], tuple[np.ndarray, np.ndarray]]  # list number -> (codes (n, code_size), ids (n,))


@dataclass(frozen=True)
class IvfLayout:
    """An IVF index without its lists (quantizer, encoder, parameters) as FAISS serialises it."""

    header: bytes  # up to where the inverted lists begin
    nlist: int
    code_size: int

    @classmethod
    def of(cls, index: faiss.IndexIVF) -> IvfLayout:
        """The layout of a trained index that holds no vector yet."""
        if index.ntotal:
            raise ValueError("the layout is taken from an empty index")
        data = faiss.serialize_index(index).tobytes()
        tail = _EMPTY_LISTS.unpack(data[-_EMPTY_LISTS.size :])
        if tail != (b"ilar", index.nlist, index.code_size, b"sprs", 0):
            raise ValueError(f"unexpected FAISS layout for {type(index).__name__}: {tail}")
        return cls(data[: -_EMPTY_LISTS.size], index.nlist, index.code_size)

    @classmethod
    def read(cls, path: Path, lists_offset: int, nlist: int, code_size: int) -> IvfLayout:
        """The layout at the head of a base file this module wrote."""
        with open(path, "rb") as handle:
            return cls(handle.read(lists_offset), nlist, code_size)

    def empty(self) -> faiss.IndexIVF:
        """A trained index with no vector, in memory: what new vectors are encoded with."""
        tail = _EMPTY_LISTS.pack(b"ilar", self.nlist, self.code_size, b"sprs", 0)
        return faiss.deserialize_index(np.frombuffer(self.header + tail, dtype=np.uint8))

    def header_for(self, ntotal: int) -> bytes:
        empty = self.empty()
        empty.ntotal = ntotal
        return faiss.serialize_index(empty).tobytes()[: -_EMPTY_LISTS.size]


DURABLE_EVERY = 16 << 20  # bytes of lists written between two fdatasyncs of a base file


def write_ivf(path: Path, layout: IvfLayout, sizes: np.ndarray, lists: Lists) -> int:
    """Write the base file atomically (temp file, fsync, rename); ``lists(i)`` gives list i's
    codes and ids, which must number ``sizes[i]``. Returns where the lists begin.

    The file is made durable ``DURABLE_EVERY`` bytes at a time, not once at the end: under
    ext4's ordered journal an add's commit fsync waits for the dirty pages of every file in the
    journal's transaction, so a large base file left dirty until the end would hold every add
    for as long as it takes to write out.
    """
    sizes = np.ascontiguousarray(sizes, dtype=np.uint64)
    header = layout.header_for(int(sizes.sum()))
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(header)
        handle.write(b"ilar" + struct.pack("<QQ", layout.nlist, layout.code_size) + b"full")
        handle.write(struct.pack("<Q", layout.nlist) + sizes.tobytes())
        dirty = 0
        for number in range(layout.nlist):
            codes, ids = lists(number)
            if len(ids) != sizes[number] or codes.shape != (len(ids), layout.code_size):
                raise ValueError(f"list {number}: {len(ids)} ids, {codes.shape} codes, {sizes[number]} expected")
            if len(ids):
                handle.write(np.ascontiguousarray(codes, dtype=np.uint8))
                handle.write(np.ascontiguousarray(ids, dtype=np.int64))
                dirty += len(ids) * (layout.code_size + 8)
            if dirty >= DURABLE_EVERY:
                handle.flush()
                os.fdatasync(handle.fileno())
                dirty = 0
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return len(header)


_NO_IDS = np.zeros(0, dtype=np.int64)


def ids_by_list(index: faiss.IndexIVF) -> list[np.ndarray]:
    """The ids of each of an IVF's lists (``lists_ids``); an IVF has at least one list, so they
    always concatenate."""
    return [lists_ids(index.invlists, i) for i in range(index.nlist)]


def lists_ids(invlists: faiss.InvertedLists, number: int) -> np.ndarray:
    """The ids of one inverted list, without copying them out of a mapped file (writable in a
    list of memory's own)."""
    size = invlists.list_size(number)
    return faiss.rev_swig_ptr(invlists.get_ids(number), size) if size else _NO_IDS


def lists_codes(invlists: faiss.InvertedLists, number: int) -> np.ndarray:
    """The codes of one inverted list as a (size, code_size) array, likewise."""
    size = invlists.list_size(number)
    if not size:
        return np.zeros((0, invlists.code_size), dtype=np.uint8)
    return faiss.rev_swig_ptr(invlists.get_codes(number), size * invlists.code_size).reshape(size, -1)
