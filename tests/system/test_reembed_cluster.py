"""scripts/reembed.py in cluster mode: two workers share a gallery's re-embedding, one swaps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from index.milvus import MilvusIndexes
from index.postgres import PostgresCatalog
from index.vectors import IndexSettings
from service.core.config import Settings
from service.core.services import build_services
from service.harness.photos import flipped, package_photo, recompressed, scaled
from tests.cluster import Engines
from tests.live import ROOT
from tests.unit.core.test_reembed import _pack_named
from tests.usecases import add

pytestmark = pytest.mark.cluster


def test_two_workers_reembed_one_gallery(engines: Engines, tmp_path: Path) -> None:
    url = engines.new_database()
    env = engines.env(url, tmp_path / "photos")
    settings = Settings.from_env({**env, "FACE_SEARCH_DATA_DIR": str(tmp_path / "data")})
    photos = [package_photo(name) for name in ("Tom_Hanks_54745.png", "yaoming.jpg", "t1.jpg")]
    photos += [flipped(photo) for photo in photos] + [scaled(photos[1], 1.5), recompressed(photos[0], 60)]
    with build_services(settings) as services:
        key = services.keys.create("k", "s").record
        faces = sum(len(add(services, key, photo).faces) for photo in photos)
    new_pack = _pack_named(tmp_path, "buffalo_s_next")
    command = [sys.executable, "scripts/reembed.py", "--key", "k", "--pack", str(new_pack), "--batch", "1"]
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    shares = [int(re.search(r"(\d+) photos", out).group(1)) for out, _ in outputs]
    assert sum(shares) == len(photos), f"each photo re-embedded once in all: {shares}"

    catalog = PostgresCatalog(url)
    indexes = MilvusIndexes(catalog, env["FACE_SEARCH_MILVUS_URI"], IndexSettings())
    try:
        gallery = catalog.images.gallery(key.gallery)
        assert (gallery.pack, gallery.faces) == ("buffalo_s_next", faces)
        assert indexes.verify(key.gallery), "the new pack's collection holds exactly the gallery's faces"
        assert indexes.status(key.gallery).vectors == faces
    finally:
        indexes.close()
        catalog.close()
