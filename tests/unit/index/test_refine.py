"""The second code of a large gallery (``index.faiss.refine``): its file, its merges at checkpoints,
how well it ranks candidates, and a gallery that has one through eviction, changes, damage and a
checkpoint killed while writing it. Real FAISS quantisers on face-like vectors, real LMDB."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.faiss import FaissIndexes, packing, refine
from index.faiss import gallery as gallery_module
from index.faiss.files import IndexFiles
from index.faiss.gallery import GalleryIndex
from index.faiss.refine import Coding, RefineCodes, write_codes
from index.faiss.vector_index import IndexState, VectorIndex, nlist_for
from index.lmdb import LmdbCatalog
from index.records import IdSet
from index.vectors import IndexSettings
from service.harness.galleries import recall_of
from service.harness.synthetic import exact_top, faces
from tests.unit.index.test_large_galleries import answers, checkpoint_paused_in, killed_half_way, store

GALLERY = 12_000  # faces: just past what 8-bit codebooks train on, so the gallery gets a second code
SETTINGS = IndexSettings(ivf_threshold=10_000, save_seconds=0, rebuild_threads=2)


@pytest.fixture(scope="module")
def coder():
    """A 128-byte quantiser trained on lookalike faces (identities in groups), as a rebuild trains it."""
    return refine.train(faces(4_000, per_identity=5, group=20, seed=1).vectors, 128)


def read_back(path: Path) -> tuple[np.ndarray, np.ndarray]:
    codes = RefineCodes.open(path)
    return np.asarray(codes.ids), np.asarray(codes.codes)


def test_codes_added_out_of_order_are_written_sorted_and_read_back_mapped(coder, tmp_path: Path) -> None:
    vectors = faces(500, seed=2).vectors
    ids = np.random.default_rng(0).permutation(len(vectors)).astype(np.int64) * 3 + 7
    coding = Coding(coder)
    for start in range(0, len(ids), 300):  # batches in no order of id
        coding.add(ids[start : start + 300], vectors[start : start + 300])
    path = tmp_path / "base.codes"
    write_codes(path, coder, len(ids), coding.chunks())
    got_ids, got_codes = read_back(path)
    order = np.argsort(ids)
    assert (got_ids == ids[order]).all()
    assert (got_codes == refine.encode(coder, vectors[order])).all()
    mapped = RefineCodes.open(path)
    assert str(path) in Path("/proc/self/maps").read_text() and not mapped.codes.flags.writeable, "mapped read-only"
    assert not list(tmp_path.glob("*.tmp.*"))


def test_a_write_that_breaks_the_order_or_the_count_leaves_no_file(coder, tmp_path: Path) -> None:
    vectors = faces(50, seed=4).vectors
    codes = refine.encode(coder, vectors)
    path = tmp_path / "base.codes"
    with pytest.raises(ValueError, match="ascending"):
        write_codes(path, coder, 200, iter([(np.arange(100, 0, -1), codes[:100]), (np.arange(200, 300), codes[100:])]))
    with pytest.raises(ValueError, match="expected"):
        write_codes(path, coder, 201, iter([(np.arange(200), codes)]))
    assert not path.exists()


def test_a_merge_drops_removed_faces_and_puts_added_ones_in_order(coder, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(refine, "CHUNK", 64)  # many chunks, so added faces fall into several of them
    vectors = faces(400, seed=5).vectors
    ids = np.arange(100, 100 + 2 * len(vectors), 2, dtype=np.int64)  # even ids, gaps between them
    path = tmp_path / "old.codes"
    write_codes(path, coder, len(ids), iter([(ids, refine.encode(coder, vectors))]))
    old = RefineCodes.open(path)
    removed = ids[::7]
    added = np.array([3, 101, 555, 1001, 5000, 703], dtype=np.int64)  # before, between and after the old ids
    fresh = faces(10, seed=6).vectors[: len(added)]
    count, chunks = old.merged(removed, added, refine.encode(coder, fresh))
    write_codes(tmp_path / "new.codes", coder, count, chunks)
    got_ids, got_codes = read_back(tmp_path / "new.codes")
    expected = {int(i): c for i, c in zip(ids, refine.encode(coder, vectors), strict=True) if i not in set(removed)}
    expected |= {int(i): c for i, c in zip(added, refine.encode(coder, fresh), strict=True)}
    assert got_ids.tolist() == sorted(expected)
    assert all((got_codes[n] == expected[int(i)]).all() for n, i in enumerate(got_ids))


def test_the_second_code_ranks_a_persons_true_neighbours_among_its_first_hundred(coder) -> None:
    """What it is for: of thousands of candidates, the best hundred by code hold the exact top 10
    (lookalike groups put strangers close); a coarse 16-byte code does not manage it."""
    data = faces(4_000, per_identity=5, group=20, seed=1)  # the faces the quantiser was trained on
    ids = np.arange(len(data.vectors), dtype=np.int64)
    truth = exact_top(data.vectors, ids, data.queries[:200], 10)

    def share(quantiser) -> float:
        codes = RefineCodes(quantiser, ids, refine.encode(quantiser, data.vectors))
        best = [set(codes.best(q, ids, 100)[0].tolist()) for q in data.queries[:200]]
        return float(np.mean([len(set(t) & b) / 10 for t, b in zip(truth, best, strict=True)]))

    fine = share(coder)
    coarse = share(refine.train(data.vectors, 16))
    assert fine >= 0.99, fine
    assert coarse < fine, (coarse, fine)


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[tuple[LmdbCatalog, Path, int, np.ndarray]]:
    """A gallery with a second code, built by a rebuild as the service does."""
    catalog = LmdbCatalog(tmp_path / "lmdb", 4 << 30)
    gid = catalog.keys.create("k", "h", None, "now").gallery
    data = faces(GALLERY // 5, per_identity=5, group=20, seed=8)
    store(catalog, gid, data.vectors, per_image=100)
    indexes = FaissIndexes(catalog, tmp_path / "indexes", SETTINGS, serving=True)
    indexes.rebuild(gid, progress=lambda line: None)
    assert indexes.status(gid).details.second_code == 128
    indexes.close()
    yield catalog, tmp_path / "indexes", gid, data.queries
    catalog.close()


def codes_file(folder: Path) -> Path:
    (path,) = folder.glob("*.codes")
    return path


def same_as_exact(catalog: LmdbCatalog, indexes: FaissIndexes, gid: int, queries: np.ndarray) -> float:
    snapshot = catalog.log.snapshot(gid)
    truth = exact_top(snapshot.vectors, snapshot.ids, queries, 10)
    return float(np.mean([g == t for g, t in zip(answers(indexes, gid, queries), truth, strict=True)]))


def changed(catalog: LmdbCatalog, gid: int, seed: int) -> tuple[np.ndarray, set[int]]:
    """Three photos removed (300 faces) and 40 faces added: the added ones' vectors, the
    removed ones' ids."""
    dropped = catalog.images.get_many(gid, catalog.images.ids(gid)[seed : seed + 3])
    catalog.images.delete(gid, list(dropped))
    added = faces(40, seed=seed).vectors
    store(catalog, gid, added, per_image=10)
    return added, {face.id for record in dropped.values() for face in record.faces}


def assert_changes_answered(indexes: FaissIndexes, gid: int, added: np.ndarray, gone: set[int]) -> None:
    """Each added face is its own best match, and no removed face is ever answered."""
    scores, found = indexes.search(gid, added, 10)
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4), "every added face found itself"
    assert not gone & set(found.ravel().tolist())


def test_a_second_code_coarser_per_byte_has_the_scan_return_more_candidates() -> None:
    """The fused pack's 1024-d faces in 128 bytes are ranked less finely than buffalo_s's 512-d
    ones: at ten million faces the scan returns twice the candidates, scaled down with the gallery
    alike and never below the floor; a finer code never gets fewer than the setting."""
    settings, at = IndexSettings(), gallery_module.CANDIDATES_AT
    fused, single = (
        gallery_module.candidates_for(at, 1024, 128, settings),
        gallery_module.candidates_for(at, 512, 128, settings),
    )
    assert (fused, single) == (2 * settings.candidates, settings.candidates)
    assert gallery_module.candidates_for(at // 2, 1024, 128, settings) == settings.candidates
    assert gallery_module.candidates_for(at // 100, 1024, 128, settings) == gallery_module.FEWEST_CANDIDATES
    assert gallery_module.candidates_for(at, 256, 128, settings) == settings.candidates
    for wanted, count, dim in ((1600, at, 1024), (12_800, at, 1024), (3200, at // 10, 512), (6400, 60_000, 1024)):
        setting = gallery_module.candidates_setting(wanted, count, dim, 128)
        assert gallery_module.candidates_for(count, dim, 128, replace(settings, candidates=setting)) == wanted


def test_a_gallery_with_a_second_code_answers_like_exact_search_through_changes_and_checkpoints(gallery) -> None:
    catalog, folder, gid, queries = gallery
    indexes = FaissIndexes(catalog, folder, SETTINGS, serving=True)
    indexes.open_all()
    assert same_as_exact(catalog, indexes, gid, queries[:200]) >= 0.99
    added, gone = changed(catalog, gid, seed=21)
    assert_changes_answered(indexes, gid, added, gone)
    before = codes_file(folder)
    assert indexes.save_all() == 1
    after = codes_file(folder)
    assert after != before and not before.exists(), "the checkpoint wrote the next codes file"
    assert RefineCodes.open(after).count == indexes.status(gid).vectors == catalog.images.gallery(gid).faces
    assert_changes_answered(indexes, gid, added, gone)
    assert same_as_exact(catalog, indexes, gid, queries[:200]) >= 0.99
    indexes.close()


def test_the_scan_labels_faces_by_their_rows_and_leaves_out_exactly_the_removed_ones(gallery) -> None:
    """The packed lists answer rows of the codes file (not ids): every face but the removed
    ones, each once, when the scan reads every list."""
    catalog, folder, gid, _ = gallery
    pointer = IndexFiles(folder).pointer(gid, catalog.images.gallery(gid).index_generation)
    state = IndexState(**pointer.state)
    base = VectorIndex.load(folder / pointer.file, state, folder / pointer.codes)
    base.set_nprobe(state.nlist)
    index = GalleryIndex(state, state.generation, base, folder / pointer.file, pointer.lists_offset)
    ids = np.asarray(base.codes.ids)
    removed = set(ids[5::9].tolist())
    index.overlay.remove(sorted(removed))
    _, rows = base.search(faces(3, seed=40).vectors, base.count, index.overlay.exclusion(base.labels))
    for found in rows:
        answered = ids[found[found >= 0]].tolist()
        assert len(answered) == len(set(answered)) == base.count - len(removed)
        assert set(answered) == set(ids.tolist()) - removed


def test_a_gallery_evicted_with_changes_made_meanwhile_answers_them_when_loaded_again(gallery) -> None:
    catalog, folder, gid, queries = gallery
    other = catalog.keys.create("o", "h", None, "now").gallery
    store(catalog, other, faces(500, seed=30).vectors)
    budget = codes_file(folder).stat().st_size  # less than the large gallery takes
    indexes = FaissIndexes(catalog, folder, replace(SETTINGS, memory_bytes=budget), serving=True)
    indexes.open_all()
    before = answers(indexes, gid, queries[:100])
    answers(indexes, other, queries[:3])
    assert gid not in indexes.loaded(), "the large gallery was dropped for the other one"
    assert answers(indexes, gid, queries[:100]) == before, "loaded again, with its codes, it answers the same"
    answers(indexes, other, queries[:3])
    assert gid not in indexes.loaded()
    added, gone = changed(catalog, gid, seed=22)  # while it is out of memory
    assert_changes_answered(indexes, gid, added, gone)
    assert same_as_exact(catalog, indexes, gid, queries[:200]) >= 0.99
    assert indexes.verify(gid)
    indexes.close()


def test_a_damaged_codes_file_is_rebuilt_from_the_catalog(gallery) -> None:
    catalog, folder, gid, queries = gallery
    path = codes_file(folder)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    indexes = FaissIndexes(catalog, folder, SETTINGS, serving=True)
    indexes.open_all()
    assert indexes.verify(gid), "served meanwhile from the catalog's log"
    assert same_as_exact(catalog, indexes, gid, queries[:100]) == 1.0
    indexes.wait(gid, timeout=300)  # the rebuild it started in the background
    assert indexes.status(gid).generation == 2 and indexes.status(gid).details.second_code == 128
    assert RefineCodes.open(codes_file(folder)).count == GALLERY, "a whole file again"
    assert same_as_exact(catalog, indexes, gid, queries[:100]) >= 0.99
    indexes.close()


KILLED_WHILE_WRITING_CODES = """
import sys, time
from pathlib import Path
from index.faiss import FaissIndexes, gallery, refine
from index.lmdb import LmdbCatalog
from index.vectors import IndexSettings

refine.CHUNK = 1000
real = refine.write_codes
def half_then_die(path, coder, count, chunks):
    def slow():
        for number, chunk in enumerate(chunks):
            if number == count // refine.CHUNK // 2:
                Path(sys.argv[3]).write_text("half")
                time.sleep(600)
            yield chunk
    return real(path, coder, count, slow())
gallery.write_codes = half_then_die
catalog = LmdbCatalog(Path(sys.argv[1]), 4 << 30)
settings = IndexSettings(ivf_threshold=10_000, save_seconds=0)
indexes = FaissIndexes(catalog, Path(sys.argv[2]), settings, serving=True)
indexes.open_all()
indexes.save_all()
"""


def test_a_checkpoint_killed_while_writing_the_codes_leaves_the_previous_ones_usable(gallery, tmp_path: Path) -> None:
    catalog, folder, gid, queries = gallery
    previous = IndexFiles(folder).pointer(gid, 1)
    added, gone = changed(catalog, gid, seed=23)
    catalog.close()
    killed_half_way(KILLED_WHILE_WRITING_CODES, catalog.env.path, folder, tmp_path / "half")

    reopened = LmdbCatalog(catalog.env.path, 4 << 30)
    after = FaissIndexes(reopened, folder, SETTINGS, serving=True)
    assert after.files.pointer(gid, 1) == previous, "the pointer still names the previous base and codes"
    assert any(".codes.tmp." in p.name for p in folder.iterdir()), "the killed write left its temp file"
    after.open_all()
    assert after.verify(gid)
    assert_changes_answered(after, gid, added, gone)
    assert after.save_all() == 1 and not list(folder.glob("*.tmp.*")), "the next checkpoint cleans up"
    assert_changes_answered(after, gid, added, gone)
    assert same_as_exact(reopened, after, gid, queries[:100]) >= 0.99
    after.close()
    reopened.close()


def test_changes_made_while_the_codes_are_written_are_in_the_next_answer(gallery, monkeypatch) -> None:
    catalog, folder, gid, queries = gallery
    indexes = FaissIndexes(catalog, folder, SETTINGS, serving=True)
    indexes.open_all()
    changed(catalog, gid, seed=40)  # for the checkpoint to fold
    indexes.sync(gid)
    folded = catalog.images.gallery(gid).faces
    with checkpoint_paused_in(monkeypatch, indexes, gallery_module, "write_codes"):
        added, gone = changed(catalog, gid, seed=50)  # while it writes the next codes file
        assert_changes_answered(indexes, gid, added, gone)
    assert RefineCodes.open(codes_file(folder)).count == folded, "the file holds what the checkpoint folded"
    assert indexes.verify(gid), "and the changes made meanwhile are beside it"
    assert_changes_answered(indexes, gid, added, gone)
    assert same_as_exact(catalog, indexes, gid, queries[:100]) >= 0.99
    indexes.close()


def scores_by_label(base: VectorIndex, packed, queries: np.ndarray) -> list[dict[int, float]]:
    """Every face's fast-scan score per query, by its label, from a scan of every list: equal
    for two packed copies only when they hold the same codes under the same labels."""
    packed.nprobe = base.state.nlist
    scores, labels = packed.search(np.ascontiguousarray(queries), base.count)
    packed.nprobe = base.index.nprobe
    return [dict(zip(row.tolist(), values.tolist(), strict=True)) for row, values in zip(labels, scores, strict=True)]


def test_a_checkpoint_carries_the_packed_copy_over_in_every_process_instead_of_packing_a_second(gallery) -> None:
    """The process that checkpoints, and one that finds the checkpoint written by another, each
    change their packed copy into the next base's; it then holds what packing that base afresh
    holds, and a search that had reached the replaced index goes on to the new one."""
    catalog, folder, gid, queries = gallery
    writer = FaissIndexes(catalog, folder, SETTINGS, serving=True)
    reader = FaissIndexes(catalog, folder, replace(SETTINGS, save_seconds=0), serving=False)
    writer.open_all()
    assert reader.search(gid, queries[:1], 10)[1].size
    copies = {}
    for indexes in (writer, reader):
        entry = indexes.cache.held(gid)
        copies[indexes] = (entry, entry.base.packed)
    assert copies[writer][1] is not None, "packed at start-up, before the first search"
    added, gone = changed(catalog, gid, seed=60)
    writer.sync(gid)
    assert writer.save_all() == 1
    assert_changes_answered(reader, gid, added, gone)  # the reader switches to the writer's checkpoint
    for indexes, (entry, packed) in copies.items():
        now = indexes.cache.held(gid)
        assert now is not entry and entry.retired and entry.base.packed is None
        assert now.base.packed is packed, "the same copy, changed: never a second one"
        assert not now.overlay.removed and not now.overlay.added_count, "the base holds every change"
        fresh = packing.packed_copy(now.base.index, now.base.codes)
        probe = faces(3, seed=61).vectors
        assert scores_by_label(now.base, packed, probe) == scores_by_label(now.base, fresh, probe)
        assert_changes_answered(indexes, gid, added, gone)
    assert same_as_exact(catalog, writer, gid, queries[:200]) >= 0.99
    retired, _ = copies[writer]
    asked = []
    real = FaissIndexes._current

    def reached_before_the_switch(self: FaissIndexes, gid: int) -> GalleryIndex:
        asked.append(gid)
        return retired if len(asked) == 1 else real(self, gid)

    writer._current = reached_before_the_switch.__get__(writer)
    assert answers(writer, gid, queries[:50]) == answers(reader, gid, queries[:50])
    assert len(asked) == 2, "the retired index sent the search on to the current one"
    writer.close()
    reader.close()


def test_a_filter_widens_a_deep_scan_by_less_than_its_share_and_a_shallow_one_by_all_of_it() -> None:
    """A quarter of a million faces (the default scan meets 80 faces per face it returns) scans
    nprobe / share**WIDEN lists, fewer than nprobe / share; the contract test's small gallery
    (12,000 faces at nprobe 64: 1.6 faces met per face returned) scans nprobe / share, all its
    lists at a fifth; no filter at all scans nprobe."""
    settings = IndexSettings()
    million = IndexState(kind="ivf", dim=512, nlist=nlist_for(1_000_000), nprobe=settings.nprobe)
    returned = gallery_module.candidates_for(1_000_000, 512, 128, settings)
    deep = gallery_module.widened(million, 1_000_000, 0.25, returned)
    assert settings.nprobe < deep == math.ceil(settings.nprobe / 0.25**gallery_module.WIDEN) < 4 * settings.nprobe
    assert gallery_module.widened(million, 1_000_000, 1.0, returned) == settings.nprobe
    small = IndexState(kind="ivf", dim=512, nlist=nlist_for(12_000), nprobe=64)
    returned = gallery_module.candidates_for(12_000, 512, 128, settings)
    assert gallery_module.widened(small, 12_000, 0.5, returned) == 128
    assert gallery_module.widened(small, 12_000, 0.2, returned) == small.nlist


def loaded(catalog: LmdbCatalog, folder: Path, gid: int) -> tuple[VectorIndex, GalleryIndex]:
    """The gallery's base as its checkpoint left it, and an index over it alone."""
    pointer = IndexFiles(folder).pointer(gid, catalog.images.gallery(gid).index_generation)
    state = IndexState(**pointer.state)
    base = VectorIndex.load(folder / pointer.file, state, folder / pointer.codes)
    return base, GalleryIndex(state, state.generation, base, folder / pointer.file, pointer.lists_offset)


def exact_among(catalog: LmdbCatalog, gid: int, allowed: IdSet, queries: np.ndarray) -> list[list[int]]:
    """The 10 nearest of the ``allowed`` faces per query, by exact search over the catalog's vectors."""
    snapshot = catalog.log.snapshot(gid)
    kept = allowed.contains(snapshot.ids)
    return exact_top(snapshot.vectors[kept], snapshot.ids[kept], queries, 10)


def test_a_filter_ranked_directly_keeps_to_its_own_faces_when_another_filter_comes_between(gallery) -> None:
    """A base keeps each recent filter's selector and gathered codes with its set of faces
    (``VectorIndex.selector``, ``selected_scorer``): a search with another set, or with the first
    again, answers among its own faces only, and as exact search over them does."""
    catalog, folder, gid, queries = gallery
    base, index = loaded(catalog, folder, gid)
    ids = np.asarray(base.codes.ids)
    halves = {"even": IdSet.of(ids[0::20]), "odd": IdSet.of(ids[1::20])}  # 600 faces each: ranked directly
    exact = lambda wanted: catalog.images.vectors(gid, wanted)  # noqa: E731
    for name in ("even", "odd", "even", "odd"):
        allowed = halves[name]
        truth = exact_among(catalog, gid, allowed, queries[:20])
        _, found = index.within(queries[:20], 10, SETTINGS, exact, allowed)
        assert set(found.ravel().tolist()) <= set(allowed.ids().tolist()), name
        assert np.mean([set(f) == set(t) for f, t in zip(found.tolist(), truth, strict=True)]) >= 0.9, name
    assert len(base._selectors) == 2 and all(held.scorer is not None for held in base._selectors.values())
    again = IdSet.of(halves["odd"].ids())  # the same faces resolved anew (after a write elsewhere)
    scorer = base.selected_scorer(halves["odd"])
    base.selector(again)
    assert base.selected_scorer(again) is scorer and len(base._selectors) == 2, "the held codes go on serving"


@pytest.mark.parametrize("direct_cost", [0, 1 << 30], ids=["ranked directly", "scanned"])
def test_a_filter_digs_deeper_the_larger_the_gallery(gallery, monkeypatch, direct_cost: int) -> None:
    """Half the gallery, its codes ranked directly or through the IVF scan with a selector (as
    ``DIRECT_COST`` decides), with a re-rank of 10: the best 10 by the code miss some of the true
    10; counted as a gallery ten times past ``RERANK_AT``, the search digs deeper (``crowding``:
    the re-rank grows tenfold, a scan's candidates by its square root and its lists to ``nprobe /
    share``) and finds them all, as exact search over those faces does."""
    catalog, folder, gid, queries = gallery
    base, index = loaded(catalog, folder, gid)
    allowed = IdSet.of(np.asarray(base.codes.ids)[0::2])
    truth = exact_among(catalog, gid, allowed, queries)
    exact = lambda wanted: catalog.images.vectors(gid, wanted)  # noqa: E731
    settings = replace(SETTINGS, rerank=10)
    monkeypatch.setattr(gallery_module, "DIRECT_COST", direct_cost)

    def recall(rerank_at: int) -> float:
        monkeypatch.setattr(gallery_module, "RERANK_AT", rerank_at)
        _, found = index.within(queries, 10, settings, exact, allowed)
        assert set(found.ravel().tolist()) <= set(allowed.ids().tolist())
        return recall_of(found.tolist(), truth)

    fixed, grown = recall(base.count), recall(base.count // 10)
    assert gallery_module.filtered_rerank(base.count, 10, settings) == 100
    assert fixed < 0.99 and grown >= 0.99, (fixed, grown)
