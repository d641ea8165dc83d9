"""The LMDB catalog grows its map when full."""

from __future__ import annotations

from pathlib import Path

from index.lmdb import LmdbCatalog


def test_lmdb_map_grows_when_full(tmp_path: Path) -> None:
    catalog = LmdbCatalog(tmp_path / "lmdb", map_size=256 * 1024)
    try:
        for index in range(300):
            catalog.keys.create(f"key-{index:04d}-" + "x" * 400, "hash" * 50, None, "now")
        assert len(catalog.keys.all()) == 300
        assert catalog.env.map_size > 256 * 1024
    finally:
        catalog.close()
