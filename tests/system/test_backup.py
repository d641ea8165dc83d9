"""scripts/backup.py under write load, restored into a new data directory: a server started on
it serves every image acknowledged before the backup began, with its photo, metadata and
search results, and names no photo it does not have. In cluster mode, the same script over a
PostgreSQL catalog and the shared photo folder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import LiveServer
from service.harness.photos import b64, flipped, package_photo, scaled
from tests.cluster import Engines
from tests.live import ROOT
from tests.usecases import add, find, page

PHOTOS = [
    package_photo("Tom_Hanks_54745.png"),
    flipped(package_photo("Tom_Hanks_54745.png")),
    package_photo("yaoming.jpg"),
    scaled(package_photo("yaoming.jpg"), 0.8),
    package_photo("t1.jpg"),
]


def _run(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "scripts/backup.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def _script(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = _run(data_dir, *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.cluster
def test_a_cluster_backup_restores_into_another_database_with_its_own_vectors(engines: Engines, tmp_path: Path) -> None:
    """The catalog (one PostgreSQL snapshot) and the photos; Milvus is filled from the restored
    catalog, in collections of its own."""
    source = engines.env(engines.new_database(), tmp_path / "photos")
    with build_services(Settings.from_env({**source, "FACE_SEARCH_DATA_DIR": str(tmp_path / "a")})) as services:
        key = services.keys.create("k", "s").record
        added = {add(services, key, photo, {"n": n}).id: photo for n, photo in enumerate(PHOTOS[:3])}
        namespace = services.catalog.namespace
    printed = _script(tmp_path / "a", str(tmp_path / "backup"), env=source)
    assert "backed up 3 images and 3 photos" in printed, printed

    target = engines.env(engines.new_database(), tmp_path / "restored-photos")
    _script(tmp_path / "b", "--restore", str(tmp_path / "backup"), env=target)
    with build_services(Settings.from_env({**target, "FACE_SEARCH_DATA_DIR": str(tmp_path / "b")})) as restored:
        assert restored.catalog.namespace != namespace, "the old deployment's collections are left alone"
        key = restored.keys.named("k")
        listed, total = page(restored, key)
        assert total == 3 and {record.id: record.metadata["n"] for record in listed} == {
            image_id: n for n, image_id in enumerate(added)
        }
        for record in listed:
            assert restored.gallery.photo(key.gallery, record.id)[0] == added[record.id]
        assert restored.indexes.verify(key.gallery), "Milvus holds exactly the restored faces"
        for image_id, photo in added.items():
            assert image_id in [hit.image.id for hit in find(restored, key, photo, threshold=0.9)]
    again = _run(tmp_path / "b", "--restore", str(tmp_path / "backup"), env=target)
    assert again.returncode == 1 and "not empty" in again.stderr, again.stderr


@pytest.mark.slow
def test_a_backup_under_write_load_restores_everything_acknowledged_before_it(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_RATE_LIMIT": "0"}).start()
    acknowledged: dict[int, tuple[float, int, dict]] = {}  # id -> (when, photo, metadata)
    stop = threading.Event()

    def write(began: float) -> None:
        n = 0
        while not stop.is_set():
            metadata = {"n": n}
            answer = server.call(
                "POST", "/images", json={"image": {"base64": b64(PHOTOS[n % 5]), "metadata": metadata}}
            )
            if answer.status_code == 200:
                acknowledged[answer.json()["result"]["id"]] = (time.monotonic(), n % 5, metadata)
            during = [i for i, (when, _, _) in acknowledged.items() if when > began]
            if n % 3 == 2 and during:  # deletes go on too, of images added during the backup only
                server.call("DELETE", "/images", json={"ids": [during[0]]})
                acknowledged.pop(during[0])
            n += 1

    try:
        for photo in range(5):
            write_one = server.call("POST", "/images", json={"image": {"base64": b64(PHOTOS[photo])}})
            acknowledged[write_one.json()["result"]["id"]] = (time.monotonic(), photo, {})
        thumbnail = requests.get(write_one.json()["result"]["thumbnail_url"], timeout=60).content  # made and kept
        # One instant for both threads, so no image the writer may delete counts as before it.
        began = time.monotonic() + 1.0
        writer = threading.Thread(target=write, args=(began,))
        writer.start()
        time.sleep(max(0.0, began - time.monotonic()))
        before = {i: entry for i, entry in dict(acknowledged).items() if entry[0] < began}
        printed = _script(server.data_dir, str(tmp_path / "backup"))
        # a backup can take less than one add: the writer was in the middle of a write while it ran
        # when a write it began no later than the backup's end is acknowledged after it
        ended, deadline = len(acknowledged), time.monotonic() + 60
        while len(acknowledged) <= max(ended, len(before)) and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        writer.join(60)
    finally:
        stop.set()
        server.stop()
    assert "backed up" in printed and len(acknowledged) > len(before), "writes went on during the backup"

    restored = tmp_path / "restored"
    _script(restored, "--restore", str(tmp_path / "backup"))
    kept = [path.read_bytes() for path in (restored / "photos").glob("*/*.thumb.jpg")]
    assert kept == [thumbnail], "the thumbnail made before the backup is in it, beside its photo"
    again = LiveServer(restored).start()
    try:
        listed = {item["id"]: item for item in again.call("GET", "/images?limit=1000").json()["result"]}
        assert set(before) <= set(listed), sorted(set(before) - set(listed))
        for image_id, (_, photo, metadata) in before.items():
            assert listed[image_id]["metadata"] == metadata
            assert again.call("GET", f"/images/{image_id}/file").content == PHOTOS[photo]
        for image_id in set(listed) - set(before):
            assert again.call("GET", f"/images/{image_id}/file").status_code == 200, "no image without its photo"
        for photo, data in enumerate(PHOTOS[:3]):
            body = {"image": {"base64": b64(data)}, "top_k": 1000, "threshold": 0.95}
            found = {hit["id"] for hit in again.call("POST", "/search", json=body).json()["result"]}
            assert {i for i, (_, p, _) in before.items() if p == photo} <= found
    finally:
        again.stop()
