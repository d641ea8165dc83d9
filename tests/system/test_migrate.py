"""scripts/migrate.py: an embedded deployment copied into cluster mode answers the same searches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import KEY, SECRET, LiveServer
from service.harness.photos import b64, flipped, package_photo, scaled
from service.harness.synthetic import faces
from tests.cluster import Engines
from tests.contract.test_catalog import new_image
from tests.live import ROOT
from tests.usecases import add, find

pytestmark = pytest.mark.cluster

PROBES = [package_photo("Tom_Hanks_54745.png"), package_photo("yaoming.jpg"), package_photo("t1.jpg")]


def _migrate(source: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/migrate.py", "--from", str(source), "--sample", "30"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_migrated_gallery_answers_the_same_searches(engines: Engines, tmp_path: Path) -> None:
    source = tmp_path / "embedded"
    with build_services(Settings().at(source), serving=True) as services:
        key = services.keys.create(KEY, SECRET, quota=1000).record
        for photo in (*PROBES, flipped(PROBES[0]), scaled(PROBES[1], 1.5)):
            add(services, key, photo, {"photo": len(photo)})
        other = services.keys.create("synthetic", "s").record
        data = faces(60)
        for start in range(0, len(data.vectors), 3):
            services.catalog.images.add(other.gallery, new_image(data.vectors[start : start + 3]))
        services.catalog.keys.count_request(KEY, 1000)
        before = {n: [(m.image.id, m.score) for m in find(services, key, photo)] for n, photo in enumerate(PROBES)}
    env = engines.env(engines.new_database(), tmp_path / "shared-photos")

    copied = _migrate(source, env)
    assert copied.returncode == 0, copied.stdout + copied.stderr
    assert "gallery 1 (test-key): same" in copied.stdout and "gallery 2 (synthetic): same" in copied.stdout
    again = _migrate(source, env)
    assert again.returncode == 0 and "copied" not in again.stdout, "a second run finds everything copied"

    server = LiveServer(tmp_path / "replica", env).start()
    try:
        for n, photo in enumerate(PROBES):
            hits = server.call("POST", "/search", json={"image": {"base64": b64(photo)}}).json()["result"]
            assert [hit["id"] for hit in hits] == [image for image, _ in before[n]]
            assert [hit["score"] for hit in hits] == pytest.approx([score for _, score in before[n]], abs=1e-3)
            assert server.call("GET", f"/images/{hits[0]['id']}/file").content == photo
        keys = server.call("GET", "/images").json()
        assert keys["total"] == 5
    finally:
        server.stop()
