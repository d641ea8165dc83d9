"""Power cuts: a server killed with SIGKILL while a client streams adds loses nothing it acknowledged."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import requests

from index.faiss import FaissIndexes
from index.lmdb import LmdbCatalog
from index.vectors import IndexSettings
from service.harness.live import KEY, LiveServer
from service.harness.photos import b64, flipped, package_photo, recompressed, scaled

PHOTOS = [
    package_photo("Tom_Hanks_54745.png"),
    flipped(package_photo("Tom_Hanks_54745.png")),
    package_photo("yaoming.jpg"),
    scaled(package_photo("yaoming.jpg"), 1.5),
    recompressed(package_photo("t1.jpg"), 70),
]


def _stream_adds(server: LiveServer, acknowledged: dict[int, int], stop: threading.Event) -> None:
    """Add photos until the server dies; remember the ids it acknowledged and which photo."""
    index = 0
    while not stop.is_set():
        photo = index % len(PHOTOS)
        try:
            answer = server.call(
                "POST", "/images", json={"image": {"base64": b64(PHOTOS[photo]), "metadata": {"p": photo}}}
            )
        except requests.RequestException:
            return
        if answer.status_code == 200:
            acknowledged[answer.json()["result"]["id"]] = photo
        index += 1


def _check(server: LiveServer, acknowledged: dict[int, int]) -> None:
    listed = {}
    offset = 0
    while True:
        page = server.call("GET", f"/images?offset={offset}&limit=1000").json()
        listed.update({item["id"]: item for item in page["result"]})
        offset += 1000
        if offset >= page["total"]:
            break
    missing = set(acknowledged) - set(listed)
    assert not missing, f"acknowledged adds lost: {sorted(missing)}"
    unacknowledged = set(listed) - set(acknowledged)
    assert len(unacknowledged) <= 1, "at most the add in flight at the kill may have committed"
    for image_id, item in listed.items():
        photo = server.call("GET", f"/images/{image_id}/file")
        assert photo.status_code == 200, "every listed image has its photo"
        if image_id in acknowledged:
            assert photo.content == PHOTOS[acknowledged[image_id]]
        assert item["faces"] >= 1
    for photo_index, photo in enumerate(PHOTOS):
        expected = {i for i, p in acknowledged.items() if p == photo_index}
        hits = server.call("POST", "/search", json={"image": {"base64": b64(photo)}, "top_k": 1000, "threshold": 0.95})
        found = {hit["id"] for hit in hits.json()["result"]}
        assert expected <= found, f"acknowledged adds not searchable: {sorted(expected - found)}"


def _agree_on_disk(data_dir: Path) -> None:
    """With the server stopped: no orphan photo files, and the index (as the server would load it) matches LMDB."""
    catalog = LmdbCatalog(data_dir / "lmdb")
    try:
        files = catalog.images.files()
        on_disk = {p.relative_to(data_dir / "photos").as_posix() for p in (data_dir / "photos").glob("*/*")}
        indexes = FaissIndexes(catalog, data_dir / "indexes", IndexSettings())
        gallery = catalog.keys.get(KEY).gallery
        assert indexes.verify(gallery)
    finally:
        catalog.close()
    orphans = on_disk - files
    # a kill between file and commit leaves an orphan until the next start removes it
    assert len(orphans) <= 1, orphans
    assert files <= on_disk, "every record's photo file exists"


@pytest.mark.slow
def test_sigkill_during_adds_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(7)
    # no per-key rate limit: the check reads back every acknowledged photo, faster than 50 a second
    # one server alone on its data: no other process may be adding, so no grace for orphans
    env = {
        "FACE_SEARCH_INDEX_SAVE_SECONDS": "1",
        "FACE_SEARCH_RATE_LIMIT": "0",
        "FACE_SEARCH_ORPHAN_GRACE_SECONDS": "0",
    }
    server = LiveServer(tmp_path / "data", env)
    acknowledged: dict[int, int] = {}
    try:
        for _ in range(3):
            server.start()
            _check(server, acknowledged)
            stop = threading.Event()
            writer = threading.Thread(target=_stream_adds, args=(server, acknowledged, stop))
            writer.start()
            time.sleep(rng.uniform(1.0, 3.0))
            server.kill()
            stop.set()
            writer.join(timeout=60)
            _agree_on_disk(server.data_dir)
        server.start()
        _check(server, acknowledged)
        assert len(acknowledged) >= 5, "the client got adds through between the kills"
        state = server.call("GET", "/index").json()["result"]
        listed_faces = sum(item["faces"] for item in server.call("GET", "/images?limit=1000").json()["result"])
        assert state["vectors"] == listed_faces
    finally:
        server.stop()
    catalog = LmdbCatalog(server.data_dir / "lmdb")
    try:
        on_disk = {
            p.relative_to(server.data_dir / "photos").as_posix() for p in (server.data_dir / "photos").glob("*/*")
        }
        assert on_disk == catalog.images.files(), "after a start, no orphan photo files remain"
    finally:
        catalog.close()
