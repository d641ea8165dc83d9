"""A real PostgreSQL and a real Milvus server for the cluster tests, started once per test
session from their PyPI packages on loopback, with a fresh database for each user."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from scripts.engines import Milvus, Postgres


@dataclass
class Engines:
    postgres: Postgres
    milvus: Milvus

    def new_database(self) -> str:
        """The URL of a new, empty database on the server: a catalog of its own."""
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.postgres.url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.postgres.url.rsplit("/", 1)[0] + "/" + name

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
    postgres, milvus = Postgres(root / "postgres"), Milvus(root / "milvus")
    try:
        yield Engines(postgres.start(), milvus.start())
    finally:
        milvus.kill()
        postgres.kill()
        shutil.rmtree(root, ignore_errors=True)
