"""A real PostgreSQL and a real Milvus server for the cluster tests, started once per test
session from their PyPI packages on loopback, with a fresh database for each user."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from index.postgres import PostgresCatalog
from service.core.keys import KeyRing
from service.harness.engines import Milvus, Postgres, running
from service.harness.live import LiveServer

T = TypeVar("T")


@dataclass
class Engines:
    postgres: Postgres
    milvus: Milvus

    def new_database(self) -> str:
        """The URL of a new, empty database on the server: a catalog of its own."""
        return self.postgres.database("t_" + secrets.token_hex(6))

    def env(self, catalog_url: str, photo_dir: Path) -> dict[str, str]:
        """The settings of a replica of the cluster that keeps its catalog at ``catalog_url``."""
        return {
            "FACE_SEARCH_CATALOG_URL": catalog_url,
            "FACE_SEARCH_MILVUS_URI": self.milvus.uri,
            "FACE_SEARCH_PHOTO_DIR": str(photo_dir),
        }


@pytest.fixture(scope="session")
def engines() -> Iterator[Engines]:
    # not under pytest's tmp_path: PostgreSQL runs as nobody (as root), who cannot enter it
    root = Path(tempfile.mkdtemp(prefix="face-search-cluster-"))
    root.chmod(0o755)
    try:
        with running(root) as (postgres, milvus):
            yield Engines(postgres, milvus)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Replicas:
    """Two API replicas (real gunicorn processes on loopback) sharing one catalog, the Milvus
    server and one photo folder, as machines behind a load balancer would."""

    def __init__(self, engines: Engines, root: Path, env: dict[str, str] | None = None) -> None:
        self.catalog_url = engines.new_database()
        self.photo_dir = root / "photos"
        settings = {**engines.env(self.catalog_url, self.photo_dir), **(env or {})}
        self.servers = [LiveServer(root / f"replica-{n}", settings, log=root / f"replica-{n}.log") for n in (0, 1)]

    def start(self) -> Replicas:
        for server in self.servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def keys(self, change: Callable[[KeyRing], T]) -> T:
        """Change keys as ``scripts/keys.py`` does, from another process's view of the catalog."""
        catalog = PostgresCatalog(self.catalog_url)
        try:
            return change(KeyRing(catalog.keys))
        finally:
            catalog.close()
