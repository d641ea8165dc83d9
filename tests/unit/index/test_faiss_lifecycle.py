"""Index lifecycle on real LMDB and FAISS: flat to IVF, compaction after a bulk delete, and
rebuilds run by another process (even one killed half-way) adopted by a serving one."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.faiss.vector_index import IndexState, VectorIndex
from index.records import ImageRecord, KeyRecord, NewFace, NewImage
from service.core.config import Settings
from service.core.services import Services, build_services
from service.harness.photos import flipped, package_photo
from service.harness.synthetic import faces
from tests.live import ROOT
from tests.usecases import add, delete, find, index_state

TOM = "Tom_Hanks_54745.png"


def unit_vectors(count: int, seed: int) -> np.ndarray:
    """``count`` face-like vectors: identities of five faces each, in lookalike groups."""
    return faces(-(-count // 5), per_identity=5, seed=seed).vectors[:count]


def fill(services: Services, key: KeyRecord, vectors: np.ndarray, per_image: int = 1) -> list[ImageRecord]:
    """Store synthetic faces straight into LMDB, ``per_image`` to an image record."""
    added = []
    for start in range(0, len(vectors), per_image):
        faces = [NewFace([0, 0, 10, 10], 0.9, vector) for vector in vectors[start : start + per_image]]
        image = NewImage("none", "image/png", {}, "now", services.pack.name, faces)
        added.append(services.catalog.images.add(key.gallery, image))
    return added


@pytest.fixture
def ivf_settings(tmp_path: Path) -> Settings:
    """A low IVF threshold, and buffalo_s: its photos' 512-d faces are stored beside synthetic ones."""
    settings = replace(Settings().at(tmp_path / "data"), models="buffalo_s")
    return replace(settings, index=replace(settings.index, ivf_threshold=1000, nprobe=8))


@pytest.fixture
def server(ivf_settings: Settings):
    """The serving side, in this process: what a gunicorn worker holds."""
    with build_services(ivf_settings, serving=True) as built:
        yield built


def test_flat_to_ivf_switch_keeps_search_results(server: Services) -> None:
    key = server.keys.create("k", "s").record
    tom = add(server, key, package_photo(TOM), {"who": "tom"})
    fill(server, key, unit_vectors(400, seed=1), per_image=50)
    probe = flipped(package_photo(TOM))
    before = find(server, key, probe, top_k=3, threshold=0.3)
    assert index_state(server, key.gallery)["kind"] == "flat"

    fill(server, key, unit_vectors(1200, seed=2), per_image=50)  # past the threshold of 1000
    server.indexes.sync(key.gallery)
    server.indexes.wait(key.gallery)
    state = index_state(server, key.gallery)
    assert state["kind"] == "ivf" and state["vectors"] == 1601 and state["trained_on"] == 1601
    assert state["lists"] > 1 and state["nprobe"] == 8 and state["last_rebuild"]
    after = find(server, key, probe, top_k=3, threshold=0.3)
    assert [hit.image.id for hit in before] == [hit.image.id for hit in after] == [tom.id]
    assert server.indexes.verify(key.gallery)


def test_bulk_delete_of_half_a_gallery_is_compacted(server: Services) -> None:
    key = server.keys.create("k", "s").record
    vectors = unit_vectors(3000, seed=3)
    records = fill(server, key, vectors)
    server.indexes.sync(key.gallery)
    server.indexes.wait(key.gallery)
    built = index_state(server, key.gallery)
    assert built["kind"] == "ivf" and built["trained_on"] == 3000

    assert len(delete(server, key, [record.id for record in records[::2]])) == 1500
    deleted = {record.faces[0].id for record in records[::2]}
    _, found = server.indexes.search(key.gallery, vectors[::2], 10)  # the deleted faces themselves as queries
    assert (found >= 0).all() and not set(found.ravel().tolist()) & deleted

    server.indexes.wait(key.gallery)  # the compaction the delete started
    state = index_state(server, key.gallery)
    assert state["generation"] == built["generation"] + 1
    assert state["vectors"] == state["trained_on"] == 1500 and state["churn_since_training"] == 0
    assert server.indexes.verify(key.gallery)
    _, found = server.indexes.search(key.gallery, vectors[1::2], 1)
    assert found[:, 0].tolist() == [record.faces[0].id for record in records[1::2]], "each kept face is its nearest"


def _rebuild(settings: Settings, key: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "FACE_SEARCH_DATA_DIR": str(settings.storage.data_dir),
        "FACE_SEARCH_IVF_THRESHOLD": str(settings.index.ivf_threshold),
    }
    return subprocess.Popen(
        [sys.executable, "scripts/rebuild_index.py", "--key", key],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen, text: str) -> None:
    for line in process.stdout:
        if text in line:
            return
    raise AssertionError(f"the rebuild ended without printing {text!r}")


def _ivf_gallery(server: Services, seed: int) -> tuple[KeyRecord, np.ndarray, dict]:
    """A key whose gallery of 20,000 faces is indexed (IVF at these settings): the key, the
    faces and the index's state."""
    key = server.keys.create("k", "s").record
    vectors = unit_vectors(20000, seed=seed)
    fill(server, key, vectors, per_image=500)
    server.indexes.sync(key.gallery)
    server.indexes.wait(key.gallery)
    return key, vectors, index_state(server, key.gallery)


@pytest.mark.slow
def test_a_killed_rebuild_leaves_the_old_index_serving_and_the_next_one_succeeds(
    server: Services, ivf_settings: Settings
) -> None:
    key, vectors, old = _ivf_gallery(server, seed=4)
    assert old["kind"] == "ivf"

    killed = _rebuild(ivf_settings, "k")
    _wait_for(killed, "to train on")  # sampling for the training under way
    assert killed.poll() is None, "the rebuild must still be running when killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    assert server.catalog.images.gallery(key.gallery).index_generation == old["generation"], "nothing was committed"
    scores, _ = server.indexes.search(key.gallery, vectors[:50], 1)
    assert (scores[:, 0] > 0.99).all(), "the old index still answers"

    again = _rebuild(ivf_settings, "k")
    _wait_for(again, "vectors at seq")  # the snapshot is taken: a later add must come from the log
    late = add(server, key, package_photo(TOM), {"who": "added during the rebuild"})
    assert again.wait(timeout=300) == 0
    again.stdout.close()
    assert not list(server.indexes.files.directory.glob("*.tmp*")), "the killed rebuild's temp file is gone"

    probe = flipped(package_photo(TOM))
    assert [hit.image.id for hit in find(server, key, probe, top_k=1)] == [late.id]
    server.indexes.wait(key.gallery)  # the search noticed the new generation and adopted it
    state = index_state(server, key.gallery)
    assert state["generation"] == old["generation"] + 1 and state["vectors"] == 20001
    assert state["trained_on"] == 20000, "built from the snapshot; the late photo came from the log"
    assert [hit.image.id for hit in find(server, key, probe, top_k=1)] == [late.id]
    assert server.indexes.verify(key.gallery)


def test_a_checkpoint_being_written_does_not_hold_up_adds_or_searches(
    server: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk write of a checkpoint (seconds for a million faces) holds up no add and no search."""
    key = server.keys.create("k", "s").record
    fill(server, key, unit_vectors(300, seed=4), per_image=30)
    server.indexes.sync(key.gallery)
    writing, release = threading.Event(), threading.Event()
    real_save = VectorIndex.save

    def slow_disk(self: VectorIndex, path: Path) -> None:
        writing.set()
        assert release.wait(30), "the test never let the checkpoint finish"
        real_save(self, path)

    monkeypatch.setattr(VectorIndex, "save", slow_disk)
    saver = threading.Thread(target=server.indexes.save_all)
    saver.start()
    try:
        assert writing.wait(30)
        new = unit_vectors(10, seed=5)
        added = fill(server, key, new)  # a write the index must take in
        server.indexes.sync(key.gallery)
        scores, ids = server.indexes.search(key.gallery, new[:1], 1)
        assert ids[0][0] == added[0].faces[0].id and scores[0][0] > 0.99, "the new face is searchable meanwhile"
    finally:
        release.set()
        saver.join(30)
    assert not saver.is_alive()
    pointer = server.indexes.files.pointer(key.gallery, 0)
    reloaded = VectorIndex.load(server.indexes.files.directory / pointer.file, IndexState(**pointer.state))
    assert reloaded.count == 300, "the checkpoint holds the index as it was when the copy was taken"
    assert server.indexes.verify(key.gallery)


@pytest.mark.slow
def test_a_rebuild_the_server_started_and_sigkill_ended_leaves_the_old_index_serving(server: Services) -> None:
    key, vectors, old = _ivf_gallery(server, seed=6)
    earlier = {child.pid for child in multiprocessing.active_children()}  # the first build's, maybe still exiting
    assert server.indexes.request_rebuild(key.gallery, "asked for by the test")
    deadline = time.monotonic() + 60
    while not (children := [c for c in multiprocessing.active_children() if c.pid not in earlier]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert children, "the server started its rebuild in a child process"
    time.sleep(1.0)  # reading and training under way
    os.kill(children[0].pid, signal.SIGKILL)
    server.indexes.wait(key.gallery)
    assert server.catalog.images.gallery(key.gallery).index_generation == old["generation"], "nothing committed"
    scores, _ = server.indexes.search(key.gallery, vectors[:50], 1)
    assert (scores[:, 0] > 0.99).all(), "the old index still answers"
    assert server.indexes.rebuild(key.gallery, progress=lambda line: None) is not None, "the next one succeeds"
    assert index_state(server, key.gallery)["generation"] == old["generation"] + 1
    assert server.indexes.verify(key.gallery)


@pytest.mark.slow
def test_half_a_gallery_deleted_while_a_rebuild_runs_does_not_come_back(
    server: Services, ivf_settings: Settings
) -> None:
    key = server.keys.create("k", "s").record
    vectors = unit_vectors(20000, seed=7)
    records = fill(server, key, vectors, per_image=100)
    server.indexes.sync(key.gallery)
    server.indexes.wait(key.gallery)
    rebuild = _rebuild(ivf_settings, "k")
    _wait_for(rebuild, "vectors at seq")  # its snapshot is taken: the deletes come after it
    doomed = records[::2]
    delete(server, key, [record.id for record in doomed])
    assert rebuild.wait(timeout=600) == 0
    rebuild.stdout.close()
    deleted = {face.id for record in doomed for face in record.faces}
    _, found = server.indexes.search(key.gallery, vectors, 5)  # every face, the deleted ones among them
    assert not deleted & set(found.ravel().tolist()), "a deleted face came back with the rebuilt index"
    state = index_state(server, key.gallery)
    assert state["generation"] == state["committed_generation"] and state["vectors"] == 10000
    assert server.indexes.verify(key.gallery)
