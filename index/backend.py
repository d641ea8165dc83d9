"""The one factory that opens a storage backend: a catalog and the vector index over it.

Embedded (the default): LMDB and FAISS under the data directory, one machine. Cluster
mode, when a catalog URL and a Milvus URI are both set: PostgreSQL and Milvus, shared by
any number of replicas on any number of machines.
"""

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
    catalog_url: str | None = None  # postgresql://...: cluster mode, with milvus_uri
    milvus_uri: str | None = None  # http://host:19530: cluster mode, with catalog_url
    photo_dir: Path | None = None  # a directory every replica mounts; None: under data_dir

    @property
    def cluster(self) -> bool:
        return self.catalog_url is not None

    @property
    def lmdb_dir(self) -> Path:
        return self.data_dir / "lmdb"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"


def open_catalog(storage: StorageSettings) -> Catalog:
    """The catalog alone, for tools that manage keys and need no vectors."""
    if storage.catalog_url is not None:
        from .postgres import PostgresCatalog

        return PostgresCatalog(storage.catalog_url)
    from .lmdb import LmdbCatalog

    return LmdbCatalog(storage.lmdb_dir, storage.lmdb_map_bytes)


def open_backend(
    storage: StorageSettings, settings: IndexSettings, serving: bool = False
) -> tuple[Catalog, VectorIndexes]:
    """The catalog and the vector index over it. ``serving``: this process answers searches,
    so its vector index is kept loaded, checkpointed and rebuilt in the background; other
    processes only write and read. Close the index before the catalog."""
    if storage.cluster != (storage.milvus_uri is not None):
        raise ValueError("cluster mode needs both a catalog URL (PostgreSQL) and a Milvus URI")
    catalog = open_catalog(storage)
    if storage.milvus_uri is not None:
        from .milvus import MilvusIndexes
        from .postgres import PostgresCatalog

        assert isinstance(catalog, PostgresCatalog)
        return catalog, MilvusIndexes(catalog, storage.milvus_uri, settings, serving=serving)
    from .faiss import FaissIndexes

    return catalog, FaissIndexes(catalog, storage.index_dir, settings, serving=serving)
