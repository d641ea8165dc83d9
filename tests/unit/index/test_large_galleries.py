"""Large galleries on real LMDB and FAISS: compressed IVF re-ranked to the exact answer, galleries
evicted and loaded again, changes made meanwhile, and checkpoints killed half-way."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.faiss import FaissIndexes
from index.faiss.cache import GalleryCache
from index.faiss.rebuild import rebuild_reason
from index.faiss.vector_index import FLAT, IndexState, VectorIndex
from index.lmdb import LmdbCatalog
from index.records import NewFace, NewImage
from index.vectors import IndexSettings
from service.harness.synthetic import exact_top, faces
from tests.live import ROOT

SIZE = 100_000  # faces in the compressed gallery: what fits the suite's time budget


def store(catalog: LmdbCatalog, gid: int, vectors: np.ndarray, per_image: int = 500) -> list[int]:
    """The faces stored straight into the catalog, ``per_image`` to an image; their face ids."""
    ids: list[int] = []
    for start in range(0, len(vectors), per_image):
        chunk = vectors[start : start + per_image]
        faces_ = [NewFace([0.0, 0.0, 10.0, 10.0], 0.9, vector) for vector in chunk]
        record = catalog.images.add(gid, NewImage("x.jpg", "image/jpeg", {}, "now", "buffalo_s", faces_))
        ids.extend(face.id for face in record.faces)
    return ids


def answers(indexes: FaissIndexes, gid: int, queries: np.ndarray, k: int = 10) -> list[list[int]]:
    _, found = indexes.search(gid, queries, k)
    return [[int(i) for i in row if i >= 0] for row in found]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[LmdbCatalog]:
    opened = LmdbCatalog(tmp_path / "lmdb", 4 << 30)
    yield opened
    opened.close()


@pytest.fixture(scope="module", params=["pq4", "pq"])
def large(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LmdbCatalog, Path, int, np.ndarray, np.ndarray, IndexSettings]]:
    """A gallery of SIZE face-like vectors with a PQ index built by a rebuild, as the service does:
    fast-scan 4-bit codes ranked by a second code (the default), and 8-bit ones without one."""
    root = tmp_path_factory.mktemp("large")
    catalog = LmdbCatalog(root / "lmdb", 4 << 30)
    gid = catalog.keys.create("k", "h", None, "now").gallery
    data = faces(SIZE // 5, per_identity=5, group=20, seed=11)
    ids = np.array(store(catalog, gid, data.vectors), np.int64)
    second_code = IndexSettings().refine_bytes if request.param == "pq4" else 0
    settings = IndexSettings(
        ivf_threshold=50_000, storage=request.param, refine_bytes=second_code, save_seconds=0, rebuild_threads=2
    )
    indexes = FaissIndexes(catalog, root / "indexes", settings, serving=True)  # a script would also renice
    result = indexes.rebuild(gid, progress=lambda line: None)
    assert result is not None and result.kind == "ivf" and result.vectors == SIZE
    indexes.close()
    yield catalog, root / "indexes", gid, ids, data.queries, replace(settings, rebuild_threads=1)
    catalog.close()


@pytest.mark.slow
def test_the_compressed_index_re_ranked_answers_like_exact_search(large) -> None:
    catalog, folder, gid, _, queries, settings = large
    indexes = FaissIndexes(catalog, folder, settings, serving=True)
    state = indexes.status(gid)
    assert state.details.storage == settings.storage and state.vectors == SIZE
    assert state.details.second_code == settings.refine_bytes and state.details.rebuild_needed is None
    assert (folder / catalog_file(indexes, gid)).stat().st_size < SIZE * 2048 / 10, "codes, not 2 KB vectors"
    snapshot = catalog.log.snapshot(gid)
    sample = queries[:400]
    truth = exact_top(snapshot.vectors, snapshot.ids, sample, 10)
    got = answers(indexes, gid, sample)
    same = np.mean([g == t for g, t in zip(got, truth, strict=True)])
    assert same >= 0.99, same
    scores, found = indexes.search(gid, sample[:20], 10)
    exact = np.einsum("qd,qkd->qk", sample[:20], catalog_vectors(catalog, gid, found))
    np.testing.assert_allclose(scores, exact, atol=1e-5, err_msg="the scores are exact cosines")
    without_rerank = FaissIndexes(catalog, folder, replace(settings, rerank=1))
    worse = np.mean([g == t for g, t in zip(answers(without_rerank, gid, sample), truth, strict=True)])
    assert worse < same, ("re-ranking is what recovers the codes' loss", worse, same)
    indexes.close()


def catalog_file(indexes: FaissIndexes, gid: int) -> str:
    return indexes.files.pointer(gid, indexes.status(gid).generation).file


def catalog_vectors(catalog: LmdbCatalog, gid: int, found: np.ndarray) -> np.ndarray:
    vectors = catalog.images.vectors(gid, [int(i) for i in found.ravel()])
    return np.stack([np.stack([vectors[int(i)] for i in row]) for row in found])


def test_a_gallery_evicted_and_loaded_again_answers_the_same_with_the_changes_made_meanwhile(catalog) -> None:
    galleries = [catalog.keys.create(name, "h", None, "now").gallery for name in ("a", "b", "c")]
    data = {gid: faces(500, per_identity=4, seed=gid) for gid in galleries}
    for gid in galleries:
        store(catalog, gid, data[gid].vectors, per_image=4)  # an image per identity
    budget = int(1.5 * 2000 * 512 * 4)  # room for one and a half of the three galleries
    settings = IndexSettings(memory_bytes=budget, save_seconds=0)
    indexes = FaissIndexes(catalog, catalog.env.path.parent / "indexes", settings, serving=True)
    indexes.open_all()
    first, *others = galleries
    before = answers(indexes, first, data[first].queries)
    assert indexes.save_all() >= 1
    for other in others:
        answers(indexes, other, data[other].queries[:3])
    assert first not in indexes.loaded(), "the least recently used gallery was dropped"
    assert answers(indexes, first, data[first].queries) == before, "loaded again, it answers the same"

    for other in others:
        answers(indexes, other, data[other].queries[:3])
    assert first not in indexes.loaded()
    dropped = catalog.images.get_many(first, catalog.images.ids(first)[::3])
    catalog.images.delete(first, list(dropped))  # while the gallery is out of memory
    gone = {face.id for record in dropped.values() for face in record.faces}
    added = faces(30, seed=99)
    store(catalog, first, added.vectors, per_image=10)
    snapshot = catalog.log.snapshot(first)
    assert answers(indexes, first, added.queries) == exact_top(snapshot.vectors, snapshot.ids, added.queries, 10)
    assert not gone & {i for row in answers(indexes, first, data[first].vectors) for i in row}
    assert indexes.verify(first)
    indexes.close()


def test_a_cold_small_gallery_is_read_through_before_its_first_scan_not_at_start_up(tmp_path: Path) -> None:
    """A flat file's pages faulted in one at a time by the scan made the first search on a gallery
    not touched for a while several times slower than one sequential read of the file first."""
    data = faces(2_000, per_identity=5, seed=3)  # 10,000 faces, a 20 MB file
    saved = VectorIndex.build(512, np.arange(len(data.vectors), dtype=np.int64), data.vectors, IndexSettings())
    assert saved.state.kind == FLAT
    path = tmp_path / "base.faiss"
    saved.save(path)
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
    os.close(fd)
    loaded = VectorIndex.load(path, IndexState(kind=FLAT, dim=512))
    cached = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True)
    assert int(cached.stdout) < path.stat().st_size // 10, "opening it (at start-up) does not read it"
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_majflt
    _, found = loaded.search(data.queries, 10)
    pages = path.stat().st_size // 4096
    assert resource.getrusage(resource.RUSAGE_SELF).ru_majflt - faults < pages // 10, "read, not faulted page by page"
    assert (found == saved.search(data.queries, 10)[1]).all()
    again = VectorIndex.load(path, IndexState(kind=FLAT, dim=512))
    path.unlink()  # superseded by a newer checkpoint before its first search: still mapped
    assert (again.search(data.queries, 10)[1] == found).all()


@contextlib.contextmanager
def checkpoint_paused_in(
    monkeypatch: pytest.MonkeyPatch, indexes: FaissIndexes, owner: type, name: str
) -> Iterator[None]:
    """A checkpoint running in its own thread, held inside ``owner.name`` while the block runs."""
    reached, release = threading.Event(), threading.Event()
    real = getattr(owner, name)
    saver = threading.Thread(target=indexes.save_all)

    def paused(*args, **kwargs):
        if threading.current_thread() is saver:
            reached.set()
            assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, paused)
    saver.start()
    try:
        assert reached.wait(30)
        yield
    finally:
        release.set()
        saver.join(30)


def answers_changes_without_waiting(catalog: LmdbCatalog, indexes: FaissIndexes, gid: int) -> None:
    started = time.monotonic()
    late = faces(20, seed=5)
    store(catalog, gid, late.vectors, per_image=5)
    catalog.images.delete(gid, catalog.images.ids(gid)[:10])
    snapshot = catalog.log.snapshot(gid)
    assert answers(indexes, gid, late.queries) == exact_top(snapshot.vectors, snapshot.ids, late.queries, 10)
    assert time.monotonic() - started < 10, "neither the adds nor the searches waited for the checkpoint"


@pytest.mark.parametrize(
    "paused_in", ["writing the base file", "publishing the new base file", "mapping the new base file"]
)
def test_changes_made_while_a_checkpoint_runs_are_in_the_next_answer(catalog, monkeypatch, paused_in) -> None:
    gid = catalog.keys.create("k", "h", None, "now").gallery
    store(catalog, gid, faces(400).vectors)
    indexes = FaissIndexes(catalog, catalog.env.path.parent / "indexes", IndexSettings(save_seconds=0), serving=True)
    indexes.open_all()
    from index.faiss import gallery as gallery_module
    from index.faiss.files import IndexFiles

    loaders, real_load = [], GalleryCache.load

    def load(self: GalleryCache, gid: int):
        loaders.append(threading.current_thread())
        return real_load(self, gid)

    monkeypatch.setattr(GalleryCache, "load", load)
    owner, name = {
        "writing the base file": (gallery_module.GalleryIndex, "fold"),
        "publishing the new base file": (IndexFiles, "remove_unused"),
        "mapping the new base file": (GalleryCache, "load"),
    }[paused_in]
    with checkpoint_paused_in(monkeypatch, indexes, owner, name):
        answers_changes_without_waiting(catalog, indexes, gid)
    assert threading.current_thread() not in loaders, "the checkpoint's thread maps the new file, not a request"
    assert indexes.verify(gid), "the fold's copy missed nothing: the rest came from the log"
    snapshot = catalog.log.snapshot(gid)
    queries = faces(20, seed=5).queries
    assert answers(indexes, gid, queries) == exact_top(snapshot.vectors, snapshot.ids, queries, 10)
    indexes.close()
    reopened = FaissIndexes(catalog, catalog.env.path.parent / "indexes", IndexSettings(save_seconds=0), serving=True)
    assert reopened.verify(gid)
    reopened.close()


def test_a_checkpoint_that_fails_to_publish_leaves_the_gallery_loadable(catalog, monkeypatch) -> None:
    gid = catalog.keys.create("k", "h", None, "now").gallery
    store(catalog, gid, faces(100).vectors)
    indexes = FaissIndexes(catalog, catalog.env.path.parent / "indexes", IndexSettings(save_seconds=0), serving=True)
    indexes.open_all()
    from index.faiss.files import IndexFiles

    real = IndexFiles.write_pointer

    def disk_full(self, *args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(IndexFiles, "write_pointer", disk_full)
    with pytest.raises(OSError):
        indexes.save_all()
    monkeypatch.setattr(IndexFiles, "write_pointer", real)
    assert not indexes.cache.loading_lock(gid).locked(), "the failed checkpoint let go of the gallery"
    assert indexes.save_all() == 1
    assert indexes.verify(gid)
    indexes.close()


KILLED_CHECKPOINT = """
import os, signal, sys, time
from pathlib import Path
from index.faiss import FaissIndexes, ivf_file
from index.lmdb import LmdbCatalog
from index.vectors import IndexSettings

real = ivf_file.write_ivf
def half_then_die(path, layout, sizes, lists):
    def slow(number):
        if number == layout.nlist // 2:
            Path(sys.argv[3]).write_text("half")
            time.sleep(600)
        return lists(number)
    return real(path, layout, sizes, slow)
ivf_file.write_ivf = half_then_die
import index.faiss.gallery as gallery
gallery.write_ivf = half_then_die
catalog = LmdbCatalog(Path(sys.argv[1]), 4 << 30)
indexes = FaissIndexes(catalog, Path(sys.argv[2]), IndexSettings(ivf_threshold=500, save_seconds=0), serving=True)
indexes.open_all()
indexes.save_all()
"""


def killed_half_way(script: str, lmdb: Path, folder: Path, marker: Path) -> None:
    """Run a checkpoint in a child process and SIGKILL it once it writes ``marker``, half-way."""
    child = subprocess.Popen([sys.executable, "-c", script, str(lmdb), str(folder), str(marker)], cwd=ROOT)
    deadline = time.monotonic() + 120
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the checkpoint got half-way"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_a_checkpoint_killed_half_way_leaves_the_previous_one_usable(catalog, tmp_path: Path) -> None:
    gid = catalog.keys.create("k", "h", None, "now").gallery
    store(catalog, gid, faces(1000).vectors)
    folder = catalog.env.path.parent / "indexes"
    settings = IndexSettings(ivf_threshold=500, save_seconds=0)
    indexes = FaissIndexes(catalog, folder, settings, serving=True)
    indexes.rebuild(gid, progress=lambda line: None)
    indexes.close()
    previous = indexes.files.pointer(gid, 1)
    store(catalog, gid, faces(50, seed=3).vectors)  # changes for the next checkpoint to fold
    catalog.close()

    killed_half_way(KILLED_CHECKPOINT, catalog.env.path, folder, tmp_path / "half")

    reopened = LmdbCatalog(catalog.env.path, 4 << 30)
    assert indexes.files.pointer(gid, 1) == previous, "the pointer still names the previous base"
    assert list(folder.glob("*.tmp.*")), "the killed write left its temp file"
    after = FaissIndexes(reopened, folder, settings, serving=True)
    assert after.verify(gid), "the previous base and the log give every face"
    assert after.save_all() == 1 and not list(folder.glob("*.tmp.*")), "the next checkpoint cleans up"
    after.close()
    reopened.close()


def test_wide_vectors_keep_the_scan_codes_at_64_bytes_and_a_changed_setting_asks_for_a_rebuild() -> None:
    """A fused pack's 1024-d faces are scanned from 64-byte codes, as 512-d ones are (four bits per
    eight dimensions instead of four): the scan's time follows the bytes it reads."""
    settings = IndexSettings(ivf_threshold=1000, nprobe=8)
    built = {}
    for dim, subvectors in ((512, 128), (1024, 128), (128, 32)):
        data = faces(400, per_identity=5, group=20, dim=dim, seed=3)
        built[dim] = VectorIndex.build(dim, np.arange(len(data.vectors)), data.vectors, settings)
        assert built[dim].state.kind == "ivf" and built[dim].index.pq.M == built[dim].state.scan_codes == subvectors
        assert rebuild_reason(built[dim].state, built[dim].count, settings) is None
    wider = replace(settings, scan_bytes=128)
    reason = rebuild_reason(built[1024].state, built[1024].count, wider)
    assert reason == "the scan codes have 64 bytes a face, the setting says 128"
    assert rebuild_reason(built[512].state, built[512].count, wider) is None, "512-d codes are 4 bits per 4 dims"
    assert rebuild_reason(IndexState(kind="ivf", dim=512, extra={"storage": "pq4"}), 2000, settings) is None, (
        "an index saved before scan codes were recorded has the 4-bit codes of 4 dimensions it was built with"
    )
