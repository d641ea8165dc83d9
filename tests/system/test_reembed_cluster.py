"""scripts/reembed.py in cluster mode: two workers share a gallery's re-embedding, one swaps; and the
upgrade to buffalo_s_edgeface, served and moved pack by pack in Milvus's collections."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from index.milvus import MilvusIndexes
from index.postgres import PostgresCatalog
from index.vectors import IndexSettings
from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import REFERENCE_RUNTIME
from service.harness.photos import flipped, package_photo, recompressed, scaled
from tests.cluster import Engines
from tests.live import ROOT
from tests.unit.core.test_reembed import _pack_named
from tests.usecases import add, find

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


def test_a_fused_pack_cluster_serves_buffalo_s_galleries_then_moves_them(engines: Engines, tmp_path: Path) -> None:
    """The upgrade in cluster mode: a buffalo_s gallery keeps answering from buffalo_s's collection
    on replicas running buffalo_s_edgeface, new galleries fill the fused pack's (1024-d), and
    service.core.reembed moves the old gallery over (EdgeFace only) and back (no model)."""
    env = engines.env(engines.new_database(), tmp_path / "photos")
    # ONNX Runtime for both packs, so that the served answers can be held equal to buffalo_s's (test_pack_serving)
    settings = Settings.from_env({**env, "FACE_SEARCH_DATA_DIR": str(tmp_path / "data"), **REFERENCE_RUNTIME})
    probe = flipped(package_photo("Tom_Hanks_54745.png"))

    def answers(services, key) -> list:
        return [(hit.image.id, hit.score) for hit in find(services, key, probe, 5, -1.0)]

    with build_services(replace(settings, models="buffalo_s"), serving=True) as old:
        key = old.keys.create("kept", "s").record
        for name in ("Tom_Hanks_54745.png", "t1.jpg"):
            add(old, key, package_photo(name))
        before = answers(old, key)
    with build_services(replace(settings, models="buffalo_s_edgeface"), serving=True) as fused:
        assert answers(fused, key) == before
        add(fused, key, package_photo("yaoming.jpg"))
        new = fused.keys.create("new", "s").record
        add(fused, new, package_photo("t1.jpg"))
        assert [(g.pack, g.dim) for g in (fused.catalog.images.gallery(k.gallery) for k in (key, new))] == [
            ("buffalo_s", 512),
            ("buffalo_s_edgeface", 1024),
        ]
        assert fused.indexes.verify(key.gallery) and fused.indexes.verify(new.gallery), "each in its pack's collection"
        faces = fused.catalog.images.gallery(key.gallery).faces
        there = fused.reembedding.run(key, "buffalo_s_edgeface")
        assert (there.faces, there.lost) == (faces, 0)
        assert fused.catalog.images.gallery(key.gallery).pack == "buffalo_s_edgeface"
        assert fused.indexes.verify(key.gallery)
        assert answers(fused, key)[0][0] == before[0][0], "the fused pack finds Tom first too"
        back = fused.reembedding.run(key, "buffalo_s")
        assert (back.faces, back.lost) == (faces, 0)
    with build_services(replace(settings, models="buffalo_s"), serving=True) as old:
        assert old.indexes.verify(key.gallery)
        assert answers(old, key)[0][0] == before[0][0], "back in buffalo_s, Tom first again"
