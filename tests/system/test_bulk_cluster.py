"""scripts/import_folder.py in cluster mode: workers share one job through leases in the catalog."""

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

from index.postgres import PostgresCatalog
from service.core.keys import KeyRing
from tests.cluster import Engines
from tests.live import ROOT
from tests.photos import shared_set

pytestmark = pytest.mark.cluster

PHOTOS = 24


def _folder(root: Path) -> Path:
    lfw = shared_set("lfw") / "images"
    photos = sorted(lfw.glob("*/*.jpg"))[:PHOTOS]
    for photo in photos:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / photo.parent.name / photo.name)  # into tmp_path, not the repository
    return root


def _worker(folder: Path, env: dict[str, str], lease: float = 300) -> subprocess.Popen:
    command = [sys.executable, "scripts/import_folder.py", str(folder), "--key", "bulk", "--batch", "1",
               "--metadata-from-path", "--lease-seconds", str(lease)]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def _added(worker: subprocess.Popen) -> int:
    out, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, out
    return int(re.search(r"added (\d+) photos", out).group(1))


def _paths(url: str) -> list[str]:
    catalog = PostgresCatalog(url)
    try:
        gid = catalog.keys.get("bulk").gallery
        records, _ = catalog.images.page(gid, 0, 1000)
    finally:
        catalog.close()
    return [record.metadata["path"] for record in records]


def _cluster(engines: Engines, tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = engines.new_database()
    catalog = PostgresCatalog(url)
    try:
        KeyRing(catalog.keys).create("bulk", "secret")
    finally:
        catalog.close()
    return url, engines.env(url, tmp_path / "photos")


def test_two_workers_share_one_import(engines: Engines, tmp_path: Path) -> None:
    url, env = _cluster(engines, tmp_path)
    folder = _folder(tmp_path / "in")
    workers = [_worker(folder, env) for _ in range(2)]
    shares = [_added(worker) for worker in workers]
    assert sum(shares) == PHOTOS and all(shares), f"each worker imported a part: {shares}"
    paths = _paths(url)
    assert len(paths) == PHOTOS == len(set(paths)), "every photo once"


def test_a_killed_workers_batch_is_taken_over(engines: Engines, tmp_path: Path) -> None:
    url, env = _cluster(engines, tmp_path)
    folder = _folder(tmp_path / "in")
    first = _worker(folder, env, lease=3)
    deadline = time.monotonic() + 120
    while len(_paths(url)) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = len(_paths(url))
    assert 3 <= before < PHOTOS, "killed half-way"
    second = _worker(folder, env, lease=3)
    assert _added(second) == PHOTOS - before
    paths = _paths(url)
    assert len(paths) == PHOTOS == len(set(paths)), "every photo once, the killed worker's batch included"
