"""The one factory that opens a storage backend: a catalog and the vector index over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog
from .vectors import IndexSettings, VectorIndexes


@dataclass(frozen=True)
class StorageSettings:
    """Where the catalog and the vector indexes live."""

    data_dir: Path = Path("data")
    lmdb_map_bytes: int = 1 << 30  # initial LMDB map size; it doubles whenever full

    @property
    def lmdb_dir(self) -> Path:
        return self.data_dir / "lmdb"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"


def open_catalog(storage: StorageSettings) -> Catalog:
    """The catalog alone, for tools that manage keys and need no vectors."""
    from .lmdb import LmdbCatalog

    return LmdbCatalog(storage.lmdb_dir, storage.lmdb_map_bytes)


def open_backend(
    storage: StorageSettings, settings: IndexSettings, serving: bool = False
) -> tuple[Catalog, VectorIndexes]:
    """The catalog and the vector index over it. ``serving``: this process answers searches,
    so its vector index is kept loaded, checkpointed and rebuilt in the background; other
    processes only write and read. Close the index before the catalog."""
    from .faiss import FaissIndexes

    catalog = open_catalog(storage)
    return catalog, FaissIndexes(catalog, storage.index_dir, settings, serving=serving)
