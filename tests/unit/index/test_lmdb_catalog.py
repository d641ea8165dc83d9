"""The LMDB catalog grows its map when full, trims a long change log without holding writers, and
keeps float16 faces in half the pages while reading every face it ever wrote."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import numpy as np

from index.lmdb import LmdbCatalog
from index.lmdb.encoding import decode_face, decode_vector, dumps, encode_face, pair
from index.records import NewFace, NewImage


def test_lmdb_map_grows_when_full(tmp_path: Path) -> None:
    catalog = LmdbCatalog(tmp_path / "lmdb", map_size=256 * 1024)
    try:
        for index in range(300):
            catalog.keys.create(f"key-{index:04d}-" + "x" * 400, "hash" * 50, None, "now")
        assert len(catalog.keys.all()) == 300
        assert catalog.env.map_size > 256 * 1024
    finally:
        catalog.close()


def test_trimming_a_long_log_lets_adds_through_meanwhile(tmp_path: Path) -> None:
    """The first checkpoint after a bulk load trims every change of it: in one write transaction
    that held each add for the whole trim (seconds after a large load)."""
    catalog = LmdbCatalog(tmp_path / "lmdb", 4 << 30)
    gid = catalog.keys.create("k", "h", None, "now").gallery
    vector = np.ones(512, np.float32) / np.sqrt(512)

    def image(count: int) -> NewImage:
        return NewImage("x.jpg", "image/jpeg", {}, "now", "buffalo_s", [NewFace([0, 0, 1, 1], 0.9, vector)] * count)

    for _ in range(400):
        catalog.images.add(gid, image(500))
    loaded = catalog.images.gallery(gid).seq
    waits: list[float] = []
    stop = threading.Event()

    def adder() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            catalog.images.add(gid, image(1))
            waits.append(time.perf_counter() - started)

    thread = threading.Thread(target=adder)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    catalog.log.trim(gid, loaded)
    trimmed = time.perf_counter() - started
    stop.set()
    thread.join()
    assert catalog.log.since(gid, 0).first == loaded + 1, "every change up to the checkpoint's is gone, no later one"
    assert catalog.log.counts(gid, loaded) == (len(waits), 0)
    slowest = max(waits)
    assert slowest < trimmed / 3, f"an add waited {slowest:.2f} s of a {trimmed:.2f} s trim"
    catalog.close()


def test_many_vectors_are_read_on_several_threads_and_only_the_live_ones_answer(tmp_path: Path) -> None:
    """A re-rank reads its hundred faces a few reads at a time on the reader threads (a new
    catalog is taken as cold); each part in a transaction of its own must still leave out
    deleted faces, other galleries' faces and ids never stored, and give each face its vector."""
    catalog = LmdbCatalog(tmp_path / "lmdb", 1 << 30)
    try:
        gid = catalog.keys.create("k", "h", None, "now").gallery
        other = catalog.keys.create("o", "h", None, "now").gallery
        vectors = np.random.default_rng(3).standard_normal((400, 512)).astype(np.float32)

        def image(rows: np.ndarray) -> NewImage:
            return NewImage(
                "x.jpg", "image/jpeg", {}, "now", "buffalo_s", [NewFace([0, 0, 1, 1], 0.9, v) for v in rows]
            )

        records = [catalog.images.add(gid, image(vectors[i : i + 10])) for i in range(0, 300, 10)]
        theirs = catalog.images.add(other, image(vectors[300:310]))
        catalog.images.delete(gid, [records[4].id, records[17].id])
        live = {
            face.id: vectors[n * 10 + f]
            for n, r in enumerate(records)
            if n not in (4, 17)
            for f, face in enumerate(r.faces)
        }
        asked = sorted({face.id for r in records for face in r.faces} | {face.id for face in theirs.faces} | {10**9})
        before = {t.ident for t in threading.enumerate() if t.name.startswith("catalog-read")}
        found = catalog.images.vectors(gid, asked)
        readers = {t.ident for t in threading.enumerate() if t.name.startswith("catalog-read")} - before
        assert sorted(found) == sorted(live) and len(readers) > 1
        for face_id, vector in live.items():
            np.testing.assert_array_equal(found[face_id], vector)
    finally:
        catalog.close()


def test_reads_whose_pages_are_cached_stay_in_the_calling_thread(tmp_path: Path) -> None:
    """Handing reads to the threads costs a millisecond a search when no page comes from the disk:
    once recent reads found their pages in memory (a catalog just written), they are not spread,
    and a read that takes pages from the disk spreads the next ones again."""
    catalog = LmdbCatalog(tmp_path / "lmdb", 1 << 30)
    try:
        env = catalog.env
        keys = list(range(100))
        threads: list[set[int]] = []

        def fetch(txn: object, part: list[int]) -> dict[int, int]:
            threads[-1].add(threading.get_ident())
            return {key: key for key in part}

        def read() -> set[int]:
            threads.append(set())
            assert env.read_spread(fetch, keys) == {key: key for key in keys}
            return threads[-1]

        assert read() != {threading.get_ident()}, "a catalog not measured yet is read as cold"
        for _ in range(30):
            read()
        assert read() == {threading.get_ident()}, "reads that took no page from the disk went on being spread"
        env._cold = 1.0  # as after a read whose every key took a page from the disk
        assert threading.get_ident() not in read()
    finally:
        catalog.close()


def test_float16_faces_take_half_the_pages_and_read_back_as_float32(tmp_path: Path) -> None:
    """A fused pack's 1024-d face kept as float16 is one 4 KiB overflow page, as a 512-d float32 face
    is; as float32 it would be two. Whatever the writer gave, the catalog answers float32."""
    catalog = LmdbCatalog(tmp_path / "lmdb", 1 << 30)
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((50, 1024)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    galleries = {}
    for dtype in ("float16", "float32"):
        gid = catalog.keys.create(dtype, "h", None, "now").gallery
        faces = [NewFace([0, 0, 1, 1], 0.9, v) for v in vectors.astype(dtype)]
        record = catalog.images.add(gid, NewImage("x.jpg", "image/jpeg", {}, "now", "fused", faces))
        galleries[dtype] = (gid, [face.id for face in record.faces])
    env = catalog.env
    with env.reading() as txn:
        sizes = {
            dtype: [len(txn.get(pair(gid, face), db=env.db["faces"])) for face in ids]
            for dtype, (gid, ids) in galleries.items()
        }
    assert max(sizes["float16"]) < 4096 - 16 < min(sizes["float32"]), "one page as float16, two as float32"
    for dtype, (gid, ids) in galleries.items():
        expected = vectors.astype(dtype).astype(np.float32)
        snapshot = catalog.log.snapshot(gid)
        assert snapshot.vectors.dtype == np.float32 and (snapshot.gallery.pack, snapshot.gallery.dim) == ("fused", 1024)
        np.testing.assert_array_equal(snapshot.vectors[np.argsort(snapshot.ids)], expected)
        read = catalog.images.vectors(gid, ids[:5])
        np.testing.assert_array_equal(np.stack([read[face] for face in ids[:5]]), expected[:5])
        changes = catalog.log.since(gid, 0)
        assert changes.vectors[ids[7]].dtype == np.float32
        np.testing.assert_array_equal(changes.vectors[ids[7]], expected[7])
    catalog.close()


def test_a_face_written_before_float16_existed_reads_as_it_always_did() -> None:
    vector = np.linspace(-1, 1, 512, dtype=np.float32)
    header = dumps({"image": 7, "pack": "buffalo_s", "dim": 512})
    old = struct.pack(">H", len(header)) + header + vector.astype("<f4").tobytes()  # the format before float16
    assert encode_face(7, "buffalo_s", vector) == old, "a float32 face is written as it always was"
    face = decode_face(old)
    assert (face.image, face.pack, face.dim) == (7, "buffalo_s", 512)
    np.testing.assert_array_equal(face.vector, vector)
    np.testing.assert_array_equal(
        decode_vector(encode_face(7, "p", vector.astype(np.float16))), vector.astype(np.float16)
    )


def test_writes_arriving_together_share_one_commit_and_fail_alone(tmp_path: Path) -> None:
    """Group commit: writes queued while another commits go into the next commit together, each
    caller returning only after it; one that fails raises to its own caller and leaves the
    others' writes whole."""
    catalog = LmdbCatalog(tmp_path / "lmdb")
    env = catalog.env
    try:
        table = env.db["meta"]
        release = threading.Event()

        def first(txn) -> str:  # holds the commit until seven more writes are queued behind it
            release.wait(30)
            txn.put(b"first", b"1", db=table)
            return "first"

        def put(n: int):
            def write(txn) -> int:
                if n == 3:
                    raise ValueError("three fails")
                txn.put(f"w{n}".encode(), b"1", db=table)
                return n

            return write

        before = env.env.info()["last_txnid"]
        results: dict[int, object] = {}

        def call(n: int) -> None:
            try:
                results[n] = env.write(first if n == 0 else put(n))
            except ValueError as exc:
                results[n] = exc

        threads = [threading.Thread(target=call, args=(n,), daemon=True) for n in range(8)]
        try:
            threads[0].start()
            deadline = time.monotonic() + 10
            while not env._writer.locked() and time.monotonic() < deadline:
                time.sleep(0.001)
            for thread in threads[1:]:
                thread.start()
            while len(getattr(env, "_queued", ())) < 7 and time.monotonic() < deadline:
                time.sleep(0.001)
        finally:
            release.set()
        for thread in threads:
            thread.join(30)

        assert env.env.info()["last_txnid"] - before == 2  # one commit for the first, one for the seven
        assert isinstance(results.pop(3), ValueError)
        assert results == {n: ("first" if n == 0 else n) for n in (0, 1, 2, 4, 5, 6, 7)}
        stored = env.read(lambda txn: {key for key, _ in txn.cursor(db=table)})
        assert {b"first", b"w1", b"w2", b"w4", b"w5", b"w6", b"w7"} <= stored
        assert b"w3" not in stored
    finally:
        catalog.close()
