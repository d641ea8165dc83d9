"""IVF base files written a list at a time are the files FAISS itself writes, for every list
storage and for both coarse quantizers (a scan of the centroids, and the HNSW graph that
large galleries use), and FAISS maps them back answering as the index in memory did."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from index.faiss import vector_index
from index.faiss.vector_index import IVF, VectorIndex
from index.vectors import IndexSettings
from tests.synthetic import exact_top, faces

DATA = faces(400, per_identity=5, group=8, dim=128)  # 2,000 SFace-sized faces: an IVF of 51 lists
IDS = np.arange(10_000, 10_000 + len(DATA.vectors), dtype=np.int64)


def built(storage: str, monkeypatch: pytest.MonkeyPatch, graph: bool) -> VectorIndex:
    # A graph from a handful of lists on, so a small gallery gets the quantizer of a large one.
    monkeypatch.setattr(vector_index, "HNSW_LISTS", 8 if graph else 1_000_000)
    settings = IndexSettings(ivf_threshold=1_000, nprobe=16, storage=storage)
    index = VectorIndex.build(DATA.vectors.shape[1], IDS, DATA.vectors, settings)
    assert index.state.kind == IVF and index.state.nlist > 8
    quantizer = faiss.downcast_index(index.index.quantizer)
    assert isinstance(quantizer, faiss.IndexHNSW) == graph
    return index


@pytest.mark.parametrize("graph", [False, True], ids=["scan", "hnsw"])
@pytest.mark.parametrize("storage", ["flat", "sq8", "pq"])
def test_a_base_file_is_the_file_faiss_writes_and_maps_back(
    storage: str, graph: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    index = built(storage, monkeypatch, graph)
    path = tmp_path / "base.faiss"
    lists_offset = index.write_base(path)
    assert path.read_bytes() == faiss.serialize_index(index.index).tobytes()
    assert lists_offset is not None and path.read_bytes()[lists_offset : lists_offset + 4] == b"ilar"

    mapped = VectorIndex.load(path, index.state)
    assert mapped.count == index.count
    queries = DATA.queries[:50]
    assert np.array_equal(mapped.search(queries, 10)[1], index.search(queries, 10)[1])
    if graph:
        assert faiss.downcast_index(mapped.index.quantizer).hnsw.efSearch >= 2 * 16


def test_the_graph_quantizer_finds_the_lists_a_scan_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recall against exact search is what separates the two; it must not drop with the graph."""
    exact = exact_top(DATA.vectors, IDS, DATA.queries, 10)

    def recall(index: VectorIndex) -> float:
        _, found = index.search(DATA.queries, 10)
        return np.mean([len(set(row) & set(truth)) / 10 for row, truth in zip(found.tolist(), exact, strict=True)])

    scan, graph = recall(built("flat", monkeypatch, False)), recall(built("flat", monkeypatch, True))
    assert scan >= 0.95
    assert graph >= scan - 0.01, (graph, scan)
