"""IVF base files written a list at a time are the files FAISS itself writes, for every list
storage, and FAISS maps them back answering as the index in memory did."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from index.faiss.vector_index import IVF, VectorIndex
from index.vectors import IndexSettings
from service.harness.synthetic import faces

DATA = faces(400, per_identity=5, group=8, dim=128)  # 2,000 SFace-sized faces: an IVF of 51 lists
IDS = np.arange(10_000, 10_000 + len(DATA.vectors), dtype=np.int64)


def built(storage: str) -> VectorIndex:
    settings = IndexSettings(ivf_threshold=1_000, nprobe=16, storage=storage)
    index = VectorIndex.build(DATA.vectors.shape[1], IDS, DATA.vectors, settings)
    assert index.state.kind == IVF and index.state.nlist > 8
    return index


@pytest.mark.parametrize("storage", ["flat", "sq8", "pq", "pq4"])
def test_a_base_file_is_the_file_faiss_writes_and_maps_back(storage: str, tmp_path: Path) -> None:
    index = built(storage)
    path = tmp_path / "base.faiss"
    lists_offset = index.write_base(path)
    assert path.read_bytes() == faiss.serialize_index(index.index).tobytes()
    assert lists_offset is not None and path.read_bytes()[lists_offset : lists_offset + 4] == b"ilar"

    mapped = VectorIndex.load(path, index.state)
    assert mapped.count == index.count and mapped.index.nprobe == 16
    queries = DATA.queries[:50]
    assert np.array_equal(mapped.search(queries, 10)[1], index.search(queries, 10)[1])


def test_pq4_lists_are_searched_packed_for_fast_scan_and_rank_as_the_plain_scan_does(tmp_path: Path) -> None:
    index = built("pq4")
    path = tmp_path / "base.faiss"
    index.write_base(path)
    mapped = VectorIndex.load(path, index.state)
    assert mapped.packed is None, "packed by whoever makes it a gallery's index, not by loading"
    assert isinstance(mapped.searched(), faiss.IndexIVFPQFastScan) and mapped.searched() is mapped.packed, "once"
    assert mapped.packed_bytes == mapped.count * (128 // 4 * 4 // 8 + 8)
    queries = DATA.queries[:50]
    packed = mapped.search(queries, 10)[1]
    plain = mapped.index.search(queries, 10)[1]  # the same codes scanned unpacked
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(packed, plain, strict=True)])
    assert overlap >= 0.9, overlap  # fast-scan rounds its distance tables to 8 bits: nearly, not exactly, equal
