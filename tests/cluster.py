"""A real PostgreSQL and a real Milvus server for the cluster tests, started once per test
session from their PyPI packages on loopback, with a fresh database for each user."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from index.postgres import PostgresCatalog
from service.core.keys import KeyRing
from service.harness.engines import Milvus, Postgres, running
from service.harness.live import LiveServer

T = TypeVar("T")


@dataclass
class Engines:
    postgres: Postgres
    milvus: Milvus
    root: Path
    shared: dict[tuple[tuple[str, str], ...], Replicas] = field(default_factory=dict)

    def new_database(self) -> str:
        """The URL of a new, empty database on the server: a catalog of its own."""
        return self.postgres.database("t_" + secrets.token_hex(6))

    def replicas(self, env: dict[str, str]) -> Replicas:
        """Two replicas with the settings ``env``, started for the first module that asks and
        shared by every module that asks with the same settings until the session ends: each test
        keeps to a key of its own, so a gallery of its own, as customers of one cluster do. Ready
        again (both replicas reach both engines) before each module's use, whatever the modules
        between did to the engines."""
        key = tuple(sorted(env.items()))
        if key not in self.shared:
            self.shared[key] = Replicas(self, Path(tempfile.mkdtemp(prefix="replicas-", dir=self.root)), env).start()
        return self.shared[key].ready()

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
            made = Engines(postgres, milvus, root)
            try:
                yield made
            finally:
                for replicas in made.shared.values():
                    replicas.stop()
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

    def ready(self, timeout: float = 120.0) -> Replicas:
        """Once both replicas answer /readyz with every check passed (PostgreSQL and Milvus reached)."""
        deadline = time.monotonic() + timeout
        for server in self.servers:
            while True:
                try:
                    answer = requests.get(server.url + "/readyz", timeout=30)
                    if answer.status_code == 200 and all(answer.json()["checks"].values()):
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {server.url} is not ready: see {server.log}")
                time.sleep(0.2)
        return self

    def keys(self, change: Callable[[KeyRing], T]) -> T:
        """Change keys as ``scripts/keys.py`` does, from another process's view of the catalog."""
        catalog = PostgresCatalog(self.catalog_url)
        try:
            return change(KeyRing(catalog.keys))
        finally:
            catalog.close()
