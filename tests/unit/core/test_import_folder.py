"""scripts/import_folder.py on real photos: killed half-way, run again, nothing twice."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index.lmdb import LmdbCatalog
from service.core.config import Settings
from service.core.services import build_services
from service.harness.photos import blank
from tests.live import ROOT
from tests.photos import shared_set
from tests.usecases import find

PEOPLE = 12  # LFW people, two photos each


def _folder(root: Path) -> tuple[Path, set[str]]:
    """A folder per person with their photos, a photo without a face, a broken file and a
    copy of one photo under another name; returns it and the paths that hold faces."""
    lfw = shared_set("lfw") / "images"
    people = sorted(p for p in lfw.iterdir() if len(list(p.glob("*.jpg"))) >= 2)[:PEOPLE]
    faces = set()
    for person in people:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            shutil.copy(photo, root / person.name / photo.name)  # into tmp_path, not the repository
            faces.add(f"{person.name}/{photo.name}")
    (root / "misc").mkdir()
    (root / "misc" / "wall.png").write_bytes(blank())
    (root / "misc" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    first = sorted(faces)[0]
    shutil.copy(root / first, root / "misc" / "same-photo-again.jpg")
    (root / ".hidden.jpg").write_bytes(b"skipped")
    return root, faces


def _import(data_dir: Path, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data_dir)}
    command = [sys.executable, "scripts/import_folder.py", str(folder), "--key", "k", "--metadata-from-path"]
    return subprocess.Popen([*command, "--batch", "4"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_an_interrupted_import_resumes_without_duplicates(tmp_path: Path) -> None:
    folder, faces = _folder(tmp_path / "photos")
    settings = Settings().at(tmp_path / "data")
    catalog = LmdbCatalog(settings.storage.lmdb_dir)
    gid = catalog.keys.create("k", "unused", None, "now").gallery

    first = _import(settings.storage.data_dir, folder)
    while catalog.images.gallery(gid).images < 6 and first.poll() is None:
        time.sleep(0.02)
    assert first.poll() is None, "the import must still be running when killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stdout.close()
    assert catalog.images.gallery(gid).images < len(faces), "killed half-way"

    second = _import(settings.storage.data_dir, folder)
    summary = second.communicate(timeout=300)[0]
    assert second.returncode == 0, summary
    records, total = catalog.images.page(gid, 0, 1000)
    catalog.close()
    paths = [record.metadata["path"] for record in records]
    assert sorted(paths) == sorted(faces) and total == len(faces), "every face photo once, nothing twice"
    assert all(record.metadata["folder"] == record.metadata["path"].split("/")[0] for record in records)
    counts = re.match(r"added (\d+) photos .*, no face 1, unreadable 1, already imported (\d+)", summary)
    assert counts, summary
    added, already = int(counts[1]), int(counts[2])
    assert already - 1 >= 6 and added + already - 1 == len(faces), "the first run's photos and the copy skipped"

    with build_services(settings, serving=True) as services:  # what the server sees afterwards
        key = services.catalog.keys.get("k")
        assert services.indexes.verify(gid)
        probe = folder / sorted(faces)[-1]
        hits = find(services, key, probe.read_bytes(), top_k=1)
        assert hits[0].image.metadata["path"] == sorted(faces)[-1]
