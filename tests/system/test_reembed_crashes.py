"""The re-embedding command (scripts/reembed.py) killed by SIGKILL at the points that matter,
then run again: afterwards every face has exactly one vector, from one pack, and the gallery
answers in the new pack."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from index.lmdb.encoding import decode_face, pair
from service.core.config import Settings
from service.core.services import build_services
from service.harness.photos import flipped, package_photo
from tests.live import ROOT
from tests.unit.core.test_reembed import _pack_named
from tests.usecases import add, find

TOM = "Tom_Hanks_54745.png"

# Each runs the real script in its own process and SIGKILLs it, itself, at one point of its work.
KILL_POINTS = {
    "while staging": (
        "from index.lmdb import staging\n"
        "real = staging.LmdbStaging.stage\n"
        "calls = []\n"
        "def stage(self, *args):\n"
        "    real(self, *args)\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "staging.LmdbStaging.stage = stage\n"
    ),
    "between the new generation and the swap": (
        "from index.faiss import maintenance\n"
        "real = maintenance.write_base\n"
        "def write_base(*args):\n"
        "    real(*args)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "maintenance.write_base = write_base\n"
    ),
    "right after the swap": (
        "from index.lmdb import staging\n"
        "real = staging.LmdbStaging.swap\n"
        "def swap(self, *args):\n"
        "    real(self, *args)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "staging.LmdbStaging.swap = swap\n"
    ),
}
RUN = "import os, signal, sys\n{patch}from service.commands.reembed import main\nsys.exit(main(sys.argv[1:]))\n"


def _reembed(data_dir: Path, pack: Path, patch: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-c", RUN.format(patch=patch), "--key", "k", "--pack", str(pack), "--batch", "1"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_a_reembedding_killed_at_any_point_finishes_when_run_again(tmp_path: Path, point: str) -> None:
    settings = Settings().at(tmp_path / "data")
    new_pack = _pack_named(tmp_path, "buffalo_s_next")
    with build_services(settings, serving=True) as services:
        key = services.keys.create("k", "s").record
        tom = add(services, key, package_photo(TOM), {"who": "tom"})
        for photo in ("t1.jpg", "yaoming.jpg"):
            add(services, key, package_photo(photo))
        faces = {face.id for record in services.catalog.images.page(key.gallery, 0, 10)[0] for face in record.faces}

    killed = _reembed(settings.storage.data_dir, new_pack, KILL_POINTS[point])
    assert killed.returncode == -9, (point, killed.stderr[-2000:])
    again = _reembed(settings.storage.data_dir, new_pack)
    assert again.returncode == 0, again.stderr[-2000:]

    with build_services(replace(settings, models=str(new_pack)), serving=True) as services:
        gallery = services.catalog.images.gallery(key.gallery)
        assert (gallery.pack, gallery.faces) == ("buffalo_s_next", len(faces)), point
        env = services.catalog.env
        with env.reading() as txn:
            for face in faces:  # one vector per face, in the faces table alone, of the new pack
                assert decode_face(txn.get(pair(key.gallery, face), db=env.db["faces"])).pack == "buffalo_s_next"
            for table in ("staged", "staged_images"):
                assert txn.stat(env.db[table])["entries"] == 0, f"{table} left behind"
        records = services.catalog.images.page(key.gallery, 0, 10)[0]
        assert {record.pack for record in records} == {"buffalo_s_next"}
        assert services.indexes.verify(key.gallery)
        assert [hit.image.id for hit in find(services, key, flipped(package_photo(TOM)), top_k=1)] == [tom.id]
