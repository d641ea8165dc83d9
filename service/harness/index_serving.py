"""The serving side of scripts/bench_index.py: a fresh process (its own memory, nothing inherited
from the benchmark that filled the catalog) opens the index as a server does, answers single
queries on one thread and reports what it measured. ``measure`` starts ``serve`` in a spawned
process and returns its report.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.faiss import FaissIndexes
from index.faiss.gallery import candidates_setting
from index.lmdb import LmdbCatalog
from index.lmdb.environment import READERS
from index.records import NewFace, NewImage
from service.core.config import Limits, Settings
from service.core.filters import scope_of
from service.harness.galleries import UNINDEXED_QUERIES, kept_best, nothing_yet
from service.harness.live import ROOT

INDEX_FILES = (".faiss", ".codes")  # a gallery's base files and second codes
# The exact side of a filter's table reads every face it keeps: above this many, minutes a query,
# so it is not timed; it reads them this many at a time, so its memory stays bounded.
EXACT_SIDE_FACES = 1_000_000
EXACT_CHUNK = 100_000
# the re-rank's reads, as the report names them: made by the searching thread, by the reader threads, or by
# either as recent reads call for; each from a catalog out of the page cache and from one in it
SIDES = {"one_thread": "reading in the searching thread", "spread": "on the reader threads",
         "adaptive": "as recent reads call for"}  # fmt: skip
CACHES = ("cold", "warm")


@dataclass(frozen=True)
class Serving:
    """What the serving process measures: ``gids`` searched with ``queries`` (one row per query, or
    one block of rows per gallery); ``grid`` the nprobe and candidates swept; ``checkpoint`` a fold
    while adds and searches go on; ``rebuild_key`` a rebuild by scripts/rebuild_index.py while it
    searches; ``filters`` filtered searches (name: the request's scope fields). ``pack`` and
    ``store_as``: the faces the checkpoint's adds store."""

    data: Path
    gids: list[int]
    queries: np.ndarray
    pack: str
    store_as: str
    grid: dict | None = None
    checkpoint: bool = False
    rebuild_key: str | None = None
    filters: dict[str, dict[str, Any]] | None = None


def measure(spec: Serving) -> dict:
    """``serve`` in a spawned process: its memory is the serving index's alone."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(serve, spec).result()


def drop_from_page_cache(path: Path) -> None:
    """Make the next read of a file come from the disk, as it does for data nobody touched for a
    while. The kernel keeps the pages a process maps: unmap them first."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def unmap(path: Path) -> None:
    """Drop this process's mapped pages of a file (the next touch faults them in again), so that
    ``drop_from_page_cache`` can drop them: LMDB's map, whose address py-lmdb does not say."""
    libc = ctypes.CDLL(None, use_errno=True)
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = (int(part, 16) for part in line.split()[0].split("-"))
            libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)


def status() -> dict[str, int]:
    """Resident memory: all of it, the process's own (anonymous), and the pages of the index files
    it maps (the catalog's LMDB pages, mapped too, are the page cache of the stored vectors)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    found = {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
    mapped, index_file = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if not line[:1].isupper():  # a mapping's header: address range, perms, ..., path
            index_file = line.rstrip().endswith(INDEX_FILES)
        elif line.startswith("Rss:") and index_file:
            mapped += int(line.split()[1]) * 1024
    found["IndexFiles"] = mapped
    found["Index"] = found["RssAnon"] + mapped
    return found


def grown(base: dict[str, int]) -> dict[str, int]:
    return {name: value - base[name] for name, value in status().items()}


def timed(indexes: FaissIndexes, gid: int, rows: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds of each single-query search, and the ids each found."""
    times, found = [], []
    for row in rows:
        started = time.perf_counter()
        found.append(indexes.search(gid, row[None, :], k)[1][0])
        times.append(time.perf_counter() - started)
    return np.array(times) * 1000, np.array(found)


def serve(spec: Serving) -> dict:
    """Open the index as a server does and measure it (see ``Serving``)."""
    data, gids, queries = spec.data, spec.gids, spec.queries
    settings = Settings.from_env().at(data)
    faiss.omp_set_num_threads(1)
    base = status()
    started = time.monotonic()
    catalog = LmdbCatalog(data / "lmdb", 64 << 30)
    indexes = FaissIndexes(catalog, data / "indexes", settings.index, serving=True)
    indexes.open_all()
    out: dict[str, Any] = {"startup_s": round(time.monotonic() - started, 2), "after_open": grown(base)}
    details = indexes.status(gids[0]).details
    out["lists"], out["refine_bytes"] = (details.lists, details.second_code) if details else (0, 0)
    out["scan_bytes"] = details.scan_code if details else 0
    out.update(galleries(indexes, catalog, data, gids, queries))
    out["after_queries"] = grown(base)
    if spec.grid:
        out["grid"] = swept(indexes, gids[0], queries, spec.grid, settings)
    if spec.filters:
        out.update(filtered(indexes, catalog, gids[0], queries, spec.filters))
    if len(gids) == 1 and not spec.filters:
        out["catalog_reads"] = catalog_reads(indexes, catalog, gids[0], queries, data / "lmdb" / "data.mdb")
    if spec.checkpoint:
        out["checkpoint"] = checkpoint_while_serving(indexes, catalog, gids[0], queries, spec)
    if spec.rebuild_key:
        out["rebuild_while_serving"] = {
            **rebuild_while_serving(indexes, gids[0], queries, data, spec.rebuild_key),
            "memory": grown(base),
        }
    indexes.close()
    catalog.close()
    return out


def galleries(indexes: FaissIndexes, catalog: LmdbCatalog, data: Path, gids: list[int], queries: np.ndarray) -> dict:
    """Each measured gallery's first search after a while untouched, then its warm searches."""
    dim = queries.shape[-1]
    for gid in (g for g in catalog.images.galleries() if g not in gids):
        indexes.search(gid, queries.reshape(-1, dim)[:1], 10)  # the others first: the measured ones wait
    loaded_before = sum(g in indexes.loaded() for g in gids)
    per_gallery = []
    for n, gid in enumerate(gids):
        rows = queries[n] if queries.ndim == 3 else queries
        for path in (data / "indexes").glob(f"gallery-{gid}.*.*"):  # its files have left the page cache too
            drop_from_page_cache(path)
        first, _ = timed(indexes, gid, rows[:1])
        timed(indexes, gid, rows[1:21])  # warm-up
        times, found = timed(indexes, gid, rows)
        per_gallery.append(
            {"gallery": gid, "first_ms": float(first[0]), "times": times.tolist(), "found": found.tolist()}
        )
    return {"measured_loaded_before": loaded_before, "galleries": per_gallery}


def swept(indexes: FaissIndexes, gid: int, queries: np.ndarray, grid: dict, settings: Settings) -> list[dict]:
    """200 queries at each point of the nprobe x candidates grid."""
    points = []
    status = indexes.status(gid)
    refine_bytes = status.details.second_code if status.details else 0
    for nprobe in grid["nprobe"]:
        for candidates in grid["candidates"]:
            setting = candidates_setting(candidates, status.vectors, queries.shape[1], refine_bytes)
            indexes.tune(nprobe=nprobe, candidates=setting)
            times, found = timed(indexes, gid, queries[:200])
            point = {"nprobe": nprobe, "candidates": candidates, "times": times.tolist(), "found": found.tolist()}
            points.append(point)
    indexes.tune(nprobe=settings.index.nprobe, candidates=settings.index.candidates)
    return points


def filtered(
    indexes: FaissIndexes, catalog: LmdbCatalog, gid: int, queries: np.ndarray, filters: dict[str, dict[str, Any]]
) -> dict:
    """Each filter's searches beside the unfiltered ones, what filtering the unfiltered answer
    afterwards finds (top 10 and top 1,000), and an exact search over the faces it keeps."""
    before = status()
    unfiltered_times, unfiltered_found = timed(indexes, gid, queries)
    wide = [indexes.search(gid, row[None, :], 1000)[1][0].tolist() for row in queries[:50]]
    results = {}
    for name, fields in filters.items():
        scope = scope_of(fields, Limits())
        started = time.perf_counter()
        allowed = catalog.images.select(gid, scope)
        selected_ms = (time.perf_counter() - started) * 1000
        rows = queries[:UNINDEXED_QUERIES] if "not indexed" in name else queries
        times, found = [], []
        for row in rows:
            started = time.perf_counter()
            found.append(indexes.search(gid, row[None, :], 10, scope)[1][0].tolist())
            times.append((time.perf_counter() - started) * 1000)

        def kept(ids: list[int], allowed: Any = allowed) -> list[int]:
            return [int(i) for i in ids if i >= 0 and allowed.contains(np.array([i]))[0]][:10]

        results[name] = {
            "faces": allowed.count, "select_ms": selected_ms, "times": times, "found": found,
            "naive10": [kept(f) for f in unfiltered_found.tolist()], "naive1000": [kept(f) for f in wide],
        }  # fmt: skip
    memory = grown(before)
    for name, fields in filters.items():  # after the memory: each reads every allowed vector
        allowed, exact_times = catalog.images.select(gid, scope_of(fields, Limits())), []
        count = allowed.count
        for row in queries[: 0 if not count or count > EXACT_SIDE_FACES else 3 if count > 100_000 else 20]:
            started = time.perf_counter()
            exact_over(catalog, gid, allowed.ids(), row)
            exact_times.append((time.perf_counter() - started) * 1000)
        results[name]["exact_times"] = exact_times
    return {"unfiltered": {"times": unfiltered_times.tolist()}, "filters": results, "filters_memory": memory}


def exact_over(catalog: LmdbCatalog, gid: int, ids: np.ndarray, query: np.ndarray, k: int = 10) -> list[int]:
    """The ``k`` nearest of ``ids`` by their vectors read from the catalog, ``EXACT_CHUNK`` at a
    time: what an exact search over a filter's faces costs, in bounded memory at any size."""
    best = nothing_yet(1, k)
    for start in range(0, len(ids), EXACT_CHUNK):
        vectors = catalog.images.vectors(gid, ids[start : start + EXACT_CHUNK].tolist())
        live = np.fromiter(vectors, dtype=np.int64, count=len(vectors))
        best = kept_best(best, (np.stack(list(vectors.values())) @ query)[None, :], live, k)
    return best[1][0].tolist()


def catalog_reads(indexes: FaissIndexes, catalog: LmdbCatalog, gid: int, queries: np.ndarray, path: Path) -> dict:
    """The re-rank's reads from a catalog out of the page cache, as at ten million faces, and in it."""
    adaptive = catalog.env.spread_above
    reads: dict[str, dict[str, list[float]]] = {cache: {side: [] for side in SIDES} for cache in CACHES}
    for cache in CACHES:
        for _ in range(2):  # each side twice, in turn; the adaptive one starts from what the spread one left
            for side, threshold in zip(SIDES, (float("inf"), 0.0, adaptive), strict=True):
                catalog.env.spread_above = threshold  # this handle's, not the module's
                if cache == "cold":
                    unmap(path)
                    drop_from_page_cache(path)
                reads[cache][side] += timed(indexes, gid, queries[:200])[0].tolist()
    catalog.env.spread_above = adaptive
    return {"readers": READERS, **reads}


def checkpoint_while_serving(
    indexes: FaissIndexes, catalog: LmdbCatalog, gid: int, queries: np.ndarray, spec: Serving
) -> dict:
    """A checkpoint folded while adds and searches go on: how long they waited, the memory it took."""
    rng = np.random.default_rng(7)

    def add(n: int) -> float:
        vectors = rng.standard_normal((n, queries.shape[-1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        faces = [NewFace([0.0, 0.0, 100.0, 100.0], 0.9, v) for v in vectors.astype(spec.store_as)]
        started = time.perf_counter()
        catalog.images.add(gid, NewImage("bench.jpg", "image/jpeg", {}, "bench", spec.pack, faces))
        indexes.sync(gid)
        return (time.perf_counter() - started) * 1000

    for _ in range(100):
        add(100)  # changes for the checkpoint to fold
    before_adds = [add(1) for _ in range(50)]
    before_search, _ = timed(indexes, gid, queries[:100])
    before = status()
    saver = threading.Thread(target=indexes.save_all)
    started = time.monotonic()
    saver.start()
    during_adds: list[float] = []
    during_search: list[float] = []
    own = before["RssAnon"]
    while saver.is_alive():
        during_adds.append(add(1))
        at = len(during_search) % 100
        during_search.extend(timed(indexes, gid, queries[at : at + 1])[0].tolist())
        own = max(own, status()["RssAnon"])
    return {
        # the process's own memory at its highest while the fold ran: a second copy of the index would show here
        "fold_s": round(time.monotonic() - started, 2), "peak_memory_growth": status()["VmHWM"] - before["VmHWM"],
        "own_memory_growth": own - before["RssAnon"],
        "adds_before_ms": before_adds, "adds_during_ms": during_adds,
        "search_before_ms": before_search.tolist(), "search_during_ms": during_search,
    }  # fmt: skip


def rebuild_while_serving(indexes: FaissIndexes, gid: int, queries: np.ndarray, data: Path, key: str) -> dict:
    """Searches while scripts/rebuild_index.py runs beside, before it and after it."""
    before, _ = timed(indexes, gid, queries[:200])
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "scripts/rebuild_index.py", "--key", key], cwd=ROOT,
        env={**os.environ, "FACE_SEARCH_DATA_DIR": str(data)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    during: list[float] = []
    n = 0
    while child.poll() is None:
        during.extend(timed(indexes, gid, queries[n % len(queries) : n % len(queries) + 1])[0].tolist())
        n += 1
        time.sleep(0.02)
    rebuilt = time.monotonic() - started
    after, _ = timed(indexes, gid, queries[:200])
    return {
        "rebuild_s": round(rebuilt, 1), "exit": child.returncode, "before_ms": before.tolist(), "during_ms": during,
        "after_ms": after.tolist(), "generation": indexes.status(gid).generation,
    }  # fmt: skip
