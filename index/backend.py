"""The one factory that opens a storage backend: a catalog and the vector index over it.

Embedded (the default): LMDB and FAISS under the data directory, one machine. Cluster
mode, when a catalog URL and a Milvus URI are both set: PostgreSQL and Milvus, shared by
any number of replicas on any number of machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import Catalog, OutboxCatalog
from .vectors import IndexSettings, VectorIndexes

if TYPE_CHECKING:
    from .lmdb.run_state import LmdbRunState


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

    def problem(self) -> str | None:
        """What makes these settings unusable, if anything."""
        if self.cluster != (self.milvus_uri is not None):
            return "cluster mode needs both FACE_SEARCH_CATALOG_URL (PostgreSQL) and FACE_SEARCH_MILVUS_URI"
        return None

    @property
    def lmdb_dir(self) -> Path:
        return self.data_dir / "lmdb"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"


def open_catalog(storage: StorageSettings) -> Catalog:
    """The catalog alone, for tools that manage keys and need no vectors."""
    if storage.catalog_url is not None:
        return _cluster_catalog(storage.catalog_url)
    from .lmdb import LmdbCatalog

    return LmdbCatalog(storage.lmdb_dir, storage.lmdb_map_bytes)


def _cluster_catalog(url: str) -> OutboxCatalog:
    from .postgres import PostgresCatalog

    return PostgresCatalog(url)


def open_backend(
    storage: StorageSettings, settings: IndexSettings, serving: bool = False
) -> tuple[Catalog, VectorIndexes]:
    """The catalog and the vector index over it. ``serving``: this process answers searches,
    so its vector index is kept loaded, checkpointed and rebuilt in the background; other
    processes only write and read. Close the index before the catalog."""
    if (problem := storage.problem()) is not None:
        raise ValueError(problem)
    if storage.cluster:
        return open_cluster(storage, settings, serving)
    from .faiss import FaissIndexes

    catalog = open_catalog(storage)
    return catalog, FaissIndexes(catalog, storage.index_dir, settings, serving=serving)


def open_cluster(
    storage: StorageSettings, settings: IndexSettings, serving: bool = False
) -> tuple[OutboxCatalog, VectorIndexes]:
    """A cluster's catalog and vector index (what a migration copies into); ValueError when
    ``storage`` does not name a cluster."""
    if storage.catalog_url is None or storage.milvus_uri is None:
        raise ValueError("set FACE_SEARCH_CATALOG_URL and FACE_SEARCH_MILVUS_URI to the cluster")
    from .milvus import MilvusIndexes

    catalog = _cluster_catalog(storage.catalog_url)
    return catalog, MilvusIndexes(catalog, storage.milvus_uri, settings, serving=serving)


def restore_catalog(storage: StorageSettings, src: Path) -> None:
    """Fill the empty catalog of ``storage`` from the copy ``Catalog.backup`` wrote into ``src``
    (a catalog of the same kind). CatalogNotEmptyError when the catalog, or in the embedded
    layout anything derived from one (index files), is there already; ValueError when ``src``
    is not a backup of this kind of catalog."""
    if storage.catalog_url is not None:
        from .postgres.backup import restore

        restore(storage.catalog_url, src)
        return
    from .lmdb.backup import restore as restore_lmdb

    restore_lmdb(src, storage.lmdb_dir, storage.index_dir)


def open_run_state(folder: Path, forgettable: str) -> LmdbRunState:
    """Small state the processes of one machine share through ``folder``, not kept through a
    crash (a server's rate limits and failed logins): LMDB in either mode, since it is per
    machine (in cluster mode, per replica). Entries under ``forgettable`` may be dropped when
    there are too many."""
    from .lmdb.run_state import LmdbRunState

    return LmdbRunState(folder, forgettable)
