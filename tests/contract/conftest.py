"""The storage backends the contract suite runs on: each test gets fresh, empty storage of
every kind, which it can open, close and open again (a restart)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from index.backend import StorageSettings, open_backend
from index.catalog import Catalog
from index.vectors import IndexSettings, VectorIndexes
from tests.cluster import Engines

KINDS = [
    "embedded",  # LMDB + FAISS
    pytest.param("cluster", marks=pytest.mark.cluster),  # PostgreSQL + Milvus, real servers
]


class Storage:
    """One kind of backend over one place to keep its data."""

    def __init__(self, kind: str, root: Path, engines: Engines | None = None) -> None:
        self.kind, self.engines = kind, engines
        self.storage = StorageSettings(data_dir=root / "data")
        if engines is not None:
            self.storage = replace(self.storage, catalog_url=engines.new_database(), milvus_uri=engines.milvus.uri)
        self.opened: list[tuple[Catalog, VectorIndexes]] = []

    def open(self, serving: bool = True, **index: object) -> tuple[Catalog, VectorIndexes]:
        """The catalog and the vector index; ``index`` overrides IndexSettings fields."""
        settings = replace(IndexSettings(save_seconds=0), **index)
        opened = open_backend(self.storage, settings, serving=serving)
        if serving:
            opened[1].open_all()
        self.opened.append(opened)
        return opened

    def close(self) -> None:
        """Close what is open, the vector index before its catalog, as a process does at exit."""
        while self.opened:
            catalog, vectors = self.opened.pop()
            vectors.close()
            catalog.close()

    def restart(self, **index: object) -> tuple[Catalog, VectorIndexes]:
        self.close()
        return self.open(**index)

    def another(self, root: Path) -> Storage:
        """Fresh, empty storage of the same kind (another deployment's)."""
        return Storage(self.kind, root, self.engines)


@pytest.fixture(params=KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    engines = request.getfixturevalue("engines") if request.param == "cluster" else None
    made = Storage(request.param, tmp_path, engines)
    yield made
    made.close()
