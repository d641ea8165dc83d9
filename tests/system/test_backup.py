"""scripts/backup.py under write load, restored into a new data directory: a server started on
it serves every image acknowledged before the backup began, with its photo, metadata and
search results, and names no photo it does not have."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.live import ROOT, LiveServer
from tests.photos import b64, flipped, package_photo, scaled

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


def _script(data_dir: Path, *args: str) -> str:
    done = _run(data_dir, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_in_cluster_mode_the_script_refuses_and_names_the_database_tools(tmp_path: Path) -> None:
    """Refused before anything is opened or written, so no server needs to run."""
    cluster = {
        "FACE_SEARCH_CATALOG_URL": "postgresql://nobody@127.0.0.1:9/none",
        "FACE_SEARCH_MILVUS_URI": "http://127.0.0.1:9",
    }
    for args in ([str(tmp_path / "backup")], ["--restore", str(tmp_path)]):
        done = _run(tmp_path / "data", *args, env=cluster)
        assert done.returncode == 1 and "pg_dump" in done.stderr and "Cluster mode" in done.stderr, done.stderr
    assert sorted(tmp_path.iterdir()) == [], "nothing written"


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
