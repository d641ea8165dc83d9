"""A data directory written by earlier code opens unchanged: by the code before the layer
redesign, and by the code before the storage seam was tightened (use cases built with their
collaborators, FaissIndexes split).

Each writer is the service as it was at a baseline commit, taken from this repository's
history and run in its own interpreter; it adds, updates, deletes and searches, and records
what it answered. The current code then opens the same directory, in process (and, for the
oldest, as a real server) and must answer the same.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from service.core.config import Settings
from service.core.services import build_services
from service.harness.live import KEY, REFERENCE_RUNTIME, SECRET, LiveServer
from service.harness.photos import b64, flipped, package_photo
from tests.live import ROOT
from tests.usecases import add, find, page

BASELINE = "0e1d677"  # main just before the layers were redesigned
SEAM_BASELINE = "bea80a4"  # main just before the storage seam was tightened
OLD_CODE = ("service", "index", "models", "tests/__init__.py", "tests/photos.py")

WRITER = r"""
import hashlib, json, sys
from dataclasses import replace
from pathlib import Path
from service import images
from service.config import Settings
from service.context import build_services
from service.search import search
from tests.photos import flipped, package_photo

settings = replace(Settings(), data_dir=Path(sys.argv[1]), index_save_seconds=0)
with build_services(settings, serving=True) as services:
    key = services.keys.create("test-key", "test-secret").record
    services.keys.create("other-key", "other-secret", quota=7)
    tom = images.add_image(services, key, package_photo("Tom_Hanks_54745.png"), {"who": "tom"})
    group = images.add_image(services, key, package_photo("t1.jpg"), {"who": "group"})
    yao = images.add_image(services, key, package_photo("yaoming.jpg"), {"who": "yao"})
    gone = images.add_image(services, key, flipped(package_photo("Tom_Hanks_54745.png")), {"who": "gone"})
    images.update_metadata(services, key, group.id, {"who": "group", "v": 2})
    images.delete_images(services, key, [gone.id])
    listed, total = images.list_images(services, key, 0, 100)
    probes = {"tom": flipped(package_photo("Tom_Hanks_54745.png")), "yao": package_photo("yaoming.jpg")}
    answers = {
        name: [[hit.image.id, hit.score, hit.bbox] for hit in search(services, key, probe, 10, -1.0)]
        for name, probe in probes.items()
    }
    files = {r.id: hashlib.sha256(services.photos.read(r.file)).hexdigest() for r in listed}
    print(json.dumps({
        "listed": [[r.id, r.metadata, [[f.id, f.bbox, f.score] for f in r.faces], r.created_at] for r in listed],
        "total": total, "answers": answers, "files": files, "gone": gone.id,
        "gallery": key.gallery, "seq": services.store.gallery(key.gallery).seq,
    }))
"""


SEAM_WRITER = r"""
import hashlib, json, sys
from dataclasses import replace
from pathlib import Path
from service.core import images, search
from service.core.config import Settings
from service.core.requests import AddImage, DeleteImages, MetadataUpdate, Page, Photo, Search
from service.core.services import build_services
from tests.photos import flipped, package_photo

settings = Settings().at(Path(sys.argv[1]))
settings = replace(settings, index=replace(settings.index, save_seconds=0))
with build_services(settings, serving=True) as services:
    key = services.keys.create("test-key", "test-secret").record
    services.keys.create("other-key", "other-secret", quota=7)
    add = lambda photo, metadata: images.add_image(services, key, AddImage(Photo(photo), metadata))
    tom = add(package_photo("Tom_Hanks_54745.png"), {"who": "tom"})
    group = add(package_photo("t1.jpg"), {"who": "group"})
    yao = add(package_photo("yaoming.jpg"), {"who": "yao"})
    gone = add(flipped(package_photo("Tom_Hanks_54745.png")), {"who": "gone"})
    images.update_metadata(services, key, MetadataUpdate(group.id, {"who": "group", "v": 2}))
    images.delete_images(services, key, DeleteImages([gone.id]))
    listed, total = images.list_images(services, key, Page(0, 100))
    probes = {"tom": flipped(package_photo("Tom_Hanks_54745.png")), "yao": package_photo("yaoming.jpg")}
    find = lambda probe: search.search(services, key, Search(Photo(probe), 10, -1.0))
    answers = {name: [[hit.image.id, hit.score, hit.bbox] for hit in find(probe)] for name, probe in probes.items()}
    files = {r.id: hashlib.sha256(services.photos.read(r.file)).hexdigest() for r in listed}
    print(json.dumps({
        "listed": [[r.id, r.metadata, [[f.id, f.bbox, f.score] for f in r.faces], r.created_at] for r in listed],
        "total": total, "answers": answers, "files": files, "gone": gone.id,
        "gallery": key.gallery, "seq": services.catalog.images.gallery(key.gallery).seq,
    }))
"""


def _old_code(into: Path, commit: str) -> Path:
    """The code at ``commit``, unpacked from git; the test skips where the history is not there."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, *OLD_CODE], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone's history: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _written_by(root: Path, commit: str, writer: str) -> tuple[Path, dict]:
    code = _old_code(root / "old", commit)
    data = root / "data"
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", writer, str(data)], cwd=code, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return data, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _written_by(tmp_path_factory.mktemp("format"), BASELINE, WRITER)


@pytest.fixture(scope="module")
def written_before_the_seam(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _written_by(tmp_path_factory.mktemp("format-seam"), SEAM_BASELINE, SEAM_WRITER)


def _probes() -> dict[str, bytes]:
    return {"tom": flipped(package_photo("Tom_Hanks_54745.png")), "yao": package_photo("yaoming.jpg")}


def _copy(written: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the pristine directory, for a test that writes to it."""
    copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(written[0]), str(copy)], check=True)
    return copy, written[1]


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["written", "written_before_the_seam"])
def test_the_old_directory_answers_the_same_in_process(
    writer: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data, old = _copy(request.getfixturevalue(writer), tmp_path)
    with build_services(Settings.from_env(REFERENCE_RUNTIME).at(data), serving=True) as services:
        key = services.keys.authenticate(KEY, SECRET)
        assert key.gallery == old["gallery"]
        assert services.catalog.keys.get("other-key").quota == 7
        listed, total = page(services, key, 0, 100)
        assert total == old["total"]
        assert [[r.id, r.metadata, [[f.id, f.bbox, f.score] for f in r.faces], r.created_at] for r in listed] == old[
            "listed"
        ]
        for record in listed:
            stored = services.catalog.images.get(key.gallery, record.id)
            digest = hashlib.sha256(services.photos.read(stored.file)).hexdigest()
            assert digest == old["files"][str(record.id)]
        assert services.indexes.verify(key.gallery)
        assert services.catalog.images.gallery(key.gallery).seq == old["seq"]
        for name, probe in _probes().items():
            hits = find(services, key, probe, top_k=10, threshold=-1.0)
            assert [[hit.image.id, hit.score, hit.bbox] for hit in hits] == old["answers"][name], name
        added = add(services, key, package_photo("t1.jpg"), {"who": "new"})
        assert added.id > old["gone"], "ids go on where the old code stopped"


@pytest.mark.slow
def test_the_old_directory_is_served_by_a_real_server(written: tuple[Path, dict], tmp_path: Path) -> None:
    data, old = _copy(written, tmp_path)
    server = LiveServer(data, REFERENCE_RUNTIME).start()
    try:
        listed = server.call("GET", "/images?limit=100").json()["result"]
        assert [[item["id"], item["metadata"], item["created_at"]] for item in listed] == [
            [row[0], row[1], row[3]] for row in old["listed"]
        ]
        for name, probe in _probes().items():
            body = {"image": {"base64": b64(probe)}, "threshold": -1.0}
            hits = server.call("POST", "/search", json=body).json()["result"]
            assert [[hit["id"], hit["score"], hit["bbox"]] for hit in hits] == old["answers"][name], name
        photo = server.call("GET", f"/images/{listed[0]['id']}/file").content
        assert hashlib.sha256(photo).hexdigest() == old["files"][str(listed[0]["id"])]
    finally:
        server.stop()
