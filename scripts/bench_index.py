"""Benchmark the gallery index the service really builds, from one gallery up to ten million faces.

  python scripts/bench_index.py --service-default --sizes 1000000,3000000,10000000 [--data DIR]
  python scripts/bench_index.py --galleries 1000 --faces-per-gallery 10000 [--data DIR]
  python scripts/bench_index.py --filters --sizes 1000000 [--data DIR]
  options: --pack buffalo_s_edgeface  --queries 500  --rebuild-while-serving  --out reports/bench_index

Synthetic faces shaped like real embeddings (512-d): identities of five faces each, at cosine
0.6-0.8 to their centre; identities in lookalike groups of 20 (centre at cosine 0.65-0.75 to
the group's), the groups' centres spread over a 32-dimensional subspace, so a person's
nearest strangers sit at about 0.3 as with buffalo_s (uniform random vectors would be
equally far from each other, and any index would rank them trivially). They are generated a
chunk at a time, from a seed, straight into a real catalog (LMDB) on disk: ten million
faces are never held in memory, and a run stopped half-way goes on from what is stored.

``--pack`` a pack of several embedders (buffalo_s_edgeface) makes faces shaped like its fused
vectors: one such 512-d part per embedder, over the same identities and lookalike groups,
each unit and scaled by 1/sqrt(n), stored as the pack stores them (float16). The two
embedders of a real pair of models agree in part on who looks like whom: each further part
is a random rotation of the first part's face mixed with a face of its own (``PART_MIX``),
so that over pairs of strangers its cosines correlate with the first part's as the two
embedders' do on LFW (0.64). Recall is counted against exact search over the vectors
as generated (float32), so what storing them as float16 costs is in it; the recall of exact
search over the stored vectors is reported apart.

Then, through ``index/``'s own code and the service's default settings: the rebuild a
server would run (timed); a fresh serving process that opens the index (start-up time),
answers single queries on one thread (p50, p99) with the candidates re-scored exactly
from the catalog, and reports its resident memory; recall@10 against exact search over
every stored vector, computed a batch at a time and cached; a checkpoint folded while
adds and searches go on (how long they waited, and the memory it took); and, with
``--rebuild-while-serving``, a second rebuild by ``scripts/rebuild_index.py`` while that
process keeps searching. Search-time settings (nprobe, re-rank candidates) are swept too,
to show where the defaults sit. Galleries mode builds many small galleries and measures
resident memory, the first search on a gallery not touched for a while, and warm searches.

Filters mode stores the same faces as photos of two people each (``Photos``), with metadata
drawn so that each filter of ``FILTERS`` keeps a known share of the faces (50% to 0.01%),
collections of 100 to 100,000 photos and creation times over a year, the keys indexed from
the start but one; then, in the serving process, for each filter: recall@10 of the filtered
search against exact search over the filtered faces, its p50/p99 beside the unfiltered
search's on the same gallery, an exact search over the filtered faces (their vectors read
from the catalog) timed too, and what filtering the unfiltered answer afterwards (the naive
way, top 10 and top 1,000) finds; and the catalog's bytes per face for the metadata index.

Writes ``<out>.json`` and ``<out>.png``; ends with a line per size:
``N faces: resident X MiB (Y B/face), p50 Z ms, p99 W ms, recall@10 R``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index.catalog import Catalog  # noqa: E402
from index.faiss import FaissIndexes  # noqa: E402
from index.faiss.gallery import candidates_for  # noqa: E402
from index.filters import DEFAULT_COLLECTION, Facts, created_seconds, matches  # noqa: E402
from index.lmdb import LmdbCatalog  # noqa: E402
from index.records import NewFace, NewImage  # noqa: E402
from models.packs import ModelPack, fused, load_pack  # noqa: E402
from service.core.config import Limits, Settings  # noqa: E402
from service.core.filters import scope_of  # noqa: E402

DIM = 512
# The share of a further part's synthetic face taken from the first part's (the rest is a face of its
# own): chosen so that over pairs of strangers its cosines correlate with the first part's as much as
# buffalo_s_edgeface's two embedders' do on LFW's different-person pairs (docs/accuracy.md).
PART_MIX = 0.555
PER_IDENTITY = 5
GROUP = 20  # identities per lookalike group
LATENT = 32  # dimensions the group centres vary along
CHUNK = 100_000  # faces generated and stored at a time
PER_IMAGE = 1000  # faces per stored image record
INDEX_FILES = (".faiss", ".codes")  # a gallery's base files and second codes
# the re-rank's reads, as the report names them: made by the searching thread, by the reader threads, or by
# either as recent reads call for; each from a catalog out of the page cache and from one in it
SIDES = {"one_thread": "reading in the searching thread", "spread": "on the reader threads",
         "adaptive": "as recent reads call for"}  # fmt: skip
CACHES = ("cold", "warm")


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
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = (int(part, 16) for part in line.split()[0].split("-"))
            libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def around(centres: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at a cosine drawn from [low, high] to their row of ``centres``."""
    tangent = np.sqrt(1 / rng.uniform(low, high, size=(len(centres), 1)) ** 2 - 1)
    return unit(centres + tangent * unit(rng.standard_normal(centres.shape, dtype=np.float32)))


class Population:
    """``size`` faces of ``size / 5`` identities, any chunk of them regenerated from the seed alone.

    ``stream`` draws another embedder's vectors of the same people: the same identities in the
    same lookalike groups, every random draw its own (stream 0 draws what this always drew)."""

    def __init__(self, size: int, seed: int, dim: int = DIM, stream: int = 0) -> None:
        self.size, self.seed, self.dim, self.stream = size, seed, dim, stream
        self.identities = max(1, size // PER_IDENTITY)
        rng = self.rng(0)
        basis = np.linalg.qr(rng.standard_normal((dim, LATENT)))[0].T.astype(np.float32)
        groups = max(1, self.identities // GROUP)
        self.groups = unit(rng.standard_normal((groups, LATENT), dtype=np.float32) @ basis)

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key] if not self.stream else [self.seed, 100 + self.stream, *key])

    def centres(self, first: int, count: int) -> np.ndarray:
        """The centres of identities ``first`` .. ``first + count``, chunk by chunk from the seed."""
        parts, identity = [], first
        while identity < first + count:
            block = identity // (CHUNK // PER_IDENTITY)
            start = block * (CHUNK // PER_IDENTITY)
            rng = self.rng(1, block)
            rows = np.arange(start, min(start + CHUNK // PER_IDENTITY, self.identities))
            made = around(self.groups[rows % len(self.groups)], 0.65, 0.75, rng)
            take = made[identity - start : min(first + count, rows[-1] + 1) - start]
            parts.append(take)
            identity += len(take)
        return np.concatenate(parts)

    def chunk(self, number: int) -> np.ndarray:
        """Faces ``number * CHUNK`` onwards, identity by identity."""
        start, stop = number * CHUNK, min(self.size, (number + 1) * CHUNK)
        identities = np.arange(start, stop) // PER_IDENTITY
        centres = self.centres(int(identities[0]), int(identities[-1]) - int(identities[0]) + 1)
        return around(centres[identities - identities[0]], 0.6, 0.8, self.rng(2, number))

    def queries(self, count: int) -> np.ndarray:
        """Unseen faces of enrolled identities (the same identities in every stream)."""
        rng = np.random.default_rng([self.seed, 3])
        chosen = np.sort(rng.choice(self.identities, size=min(count, self.identities), replace=False))
        block = CHUNK // PER_IDENTITY  # identities made at a time: each block once, not once per query
        centres = [
            self.centres(first, min(block, self.identities - first))[chosen[chosen // block == first // block] - first]
            for first in np.unique(chosen // block) * block
        ]
        return around(np.concatenate(centres), 0.6, 0.8, rng if not self.stream else self.rng(3))


class Faces:
    """The synthetic faces a pack stores: one ``Population`` stream per embedder, fused as the pack
    fuses them; each further embedder's part mixes a random rotation of the first part's face in,
    so that the parts agree on lookalikes as much as real embedders do (``PART_MIX``)."""

    def __init__(self, size: int, seed: int, pack: ModelPack) -> None:
        dims = [int(model.dim or DIM) for model in pack.embedders]
        self.size, self.dim = size, sum(dims)
        self.parts = [Population(size, seed, dim, stream) for stream, dim in enumerate(dims)]
        rng = np.random.default_rng([seed, 99])
        self.rotations = [
            np.linalg.qr(rng.standard_normal((dims[0], dims[0])))[0][:, :dim].astype(np.float32) for dim in dims[1:]
        ]

    def _fused(self, first: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
        share, own = np.float32(np.sqrt(PART_MIX)), np.float32(np.sqrt(1 - PART_MIX))
        mixed = [unit(share * (first @ r) + own * o) for r, o in zip(self.rotations, others, strict=True)]
        return fused([first, *mixed])

    def chunk(self, number: int) -> np.ndarray:
        first, *others = (part.chunk(number) for part in self.parts)
        return self._fused(first, others)

    def queries(self, count: int) -> np.ndarray:
        first, *others = (part.queries(count) for part in self.parts)
        return self._fused(first, others)


def fill(catalog: LmdbCatalog, gid: int, population: Faces, label: str, pack: ModelPack) -> None:
    """Store the population's faces as ``pack`` stores them, going on from what an earlier, stopped run stored."""
    have = catalog.images.gallery(gid).faces
    if have % PER_IMAGE and have < population.size:
        raise SystemExit(f"{label}: {have} faces stored, not whole images: remove --data and start again")
    with tqdm(total=population.size, initial=have, unit="face", desc=f"storing {label}") as bar:
        for number in range(have // CHUNK, -(-population.size // CHUNK)):
            vectors = population.chunk(number)
            # an image is one transaction, so a stopped run stored whole images: go on after the last one
            first = max(0, have - number * CHUNK)
            stored = vectors.astype(pack.store_as)
            for start in range(first, len(vectors), PER_IMAGE):
                faces = [NewFace([0.0, 0.0, 100.0, 100.0], 0.9, v) for v in stored[start : start + PER_IMAGE]]
                catalog.images.add(gid, NewImage("bench.jpg", "image/jpeg", {}, "bench", pack.name, faces))
            bar.update(len(vectors) - first)


FACES_PER_PHOTO = 2
PHOTOS_PER_WRITE = 2000
COLLECTIONS = (("c100", 100), ("c1k", 1_000), ("c10k", 10_000), ("c100k", 100_000))  # photos, from the first on
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
INDEXED_KEYS = ("status", "tier", "region", "customer")  # "shade" is left to be read from the metadata
# Each filter: the request's scope fields, and (in the name) the share of the faces it keeps.
FILTERS: dict[str, dict[str, Any]] = {
    "status active (50%)": {"filter": {"status": "active"}},
    "active, tier < 50 (25%)": {"filter": {"status": "active", "tier": {"$lt": 50}}},
    "tier < 5 (5%)": {"filter": {"tier": {"$lt": 5}}},
    "region r007 (0.5%)": {"filter": {"region": "r007"}},
    "customer 42 (0.01%)": {"filter": {"customer": 42}},
    "collection of 100 photos": {"collection": "c100"},
    "collection of 1,000 photos": {"collection": "c1k"},
    "collection of 10,000 photos": {"collection": "c10k"},
    "collection of 100,000 photos": {"collection": "c100k"},
    "created in the last 18 days (5%)": {"created_after": "2026-12-14T00:00:00+00:00"},
    "shade < 5, not indexed (5%)": {"filter": {"shade": {"$lt": 5}}},
}
UNINDEXED_QUERIES = 5  # a filter on a key not indexed reads every photo's metadata: a few queries only


class Photos:
    """A population's faces as photos of ``FACES_PER_PHOTO`` faces of different people (a chunk's
    faces shuffled, then paired), each photo with metadata drawn from the seed: ``status`` active
    or closed (half each), ``tier`` 0..99, ``region`` one of 200, ``customer`` one of 10,000,
    ``shade`` 0..99 (never indexed); the first photos in ``COLLECTIONS`` of 100 to 100,000
    photos, the rest in the default one; creation times spread over 2026 in photo order."""

    def __init__(self, population: Faces, seed: int) -> None:
        self.population, self.seed = population, seed
        self.count = population.size // FACES_PER_PHOTO

    def chunk(self, number: int) -> tuple[np.ndarray, list[tuple[dict, str, str]]]:
        """The faces of chunk ``number`` in photo order, and each photo's (metadata, collection,
        created_at)."""
        rng = np.random.default_rng([self.seed, 4, number])
        vectors = self.population.chunk(number)
        vectors = vectors[rng.permutation(len(vectors))]
        count = len(vectors) // FACES_PER_PHOTO
        first = number * CHUNK // FACES_PER_PHOTO
        active, tier, region = rng.random(count) < 0.5, rng.integers(100, size=count), rng.integers(200, size=count)
        customer, shade = rng.integers(10_000, size=count), rng.integers(100, size=count)
        photos = []
        for j in range(count):
            number_ = first + j
            metadata = {
                "status": "active" if active[j] else "closed", "tier": int(tier[j]), "region": f"r{region[j]:03d}",
                "customer": int(customer[j]), "shade": int(shade[j]),
            }  # fmt: skip
            moment = YEAR_START + timedelta(days=number_ * 365 // self.count, seconds=number_ % 86_400)
            photos.append((metadata, self.collection(number_), moment.isoformat()))
        return vectors[: count * FACES_PER_PHOTO], photos

    @staticmethod
    def collection(number: int) -> str:
        start = 0
        for name, size in COLLECTIONS:
            if number < start + size:
                return name
            start += size
        return DEFAULT_COLLECTION


def fill_photos(catalog: Catalog, gid: int, photos: Photos, label: str, pack: ModelPack) -> None:
    """Store the photos, ``PHOTOS_PER_WRITE`` to a write, going on from what a stopped run stored;
    the keys of ``INDEXED_KEYS`` are indexed from the start (as ``FACE_SEARCH_FILTER_KEYS`` does)."""
    catalog.metadata.start(gid, INDEXED_KEYS, len(INDEXED_KEYS))
    have = catalog.images.gallery(gid).images
    chunk_photos = CHUNK // FACES_PER_PHOTO
    with tqdm(total=photos.count, initial=have, unit="photo", desc=f"storing {label}") as bar:
        for number in range(have // chunk_photos, -(-photos.population.size // CHUNK)):
            vectors, drawn = photos.chunk(number)
            vectors = vectors.astype(pack.store_as)
            for start in range(max(0, have - number * chunk_photos), len(drawn), PHOTOS_PER_WRITE):
                batch = [
                    NewImage("bench.jpg", "image/jpeg", metadata, created, pack.name,
                             [NewFace([0.0, 0.0, 100.0, 100.0], 0.9, v)
                              for v in vectors[FACES_PER_PHOTO * j : FACES_PER_PHOTO * (j + 1)]],
                             collection=collection)
                    for j, (metadata, collection, created) in enumerate(drawn[start : start + PHOTOS_PER_WRITE], start)
                ]  # fmt: skip
                catalog.images.add_many(gid, batch)
                bar.update(len(batch))


def filtered_truth(photos: Photos, queries: np.ndarray, cache: Path, k: int = 10) -> dict[str, np.ndarray]:
    """For each filter, the exact top-k face ids per query among the faces it keeps, from the
    generator alone (one pass over its chunks): face ids are 1.. in the order stored."""
    if cache.is_file():
        return dict(np.load(cache))
    scopes = {name: scope_of(fields, Limits()).expr() for name, fields in FILTERS.items()}
    best = {name: (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
            for name in FILTERS}  # fmt: skip
    for number in tqdm(range(-(-photos.population.size // CHUNK)), unit="chunk", desc="exact search, filtered"):
        vectors, drawn = photos.chunk(number)
        ids = number * CHUNK + 1 + np.arange(len(vectors))
        scores = queries @ vectors.T
        for name, expr in scopes.items():
            passed = np.array([matches(expr, Facts(m, c, created_seconds(t))) for m, c, t in drawn], bool)
            kept = np.flatnonzero(np.repeat(passed, FACES_PER_PHOTO))
            if not len(kept):
                continue
            part = scores[:, kept]
            top = np.argsort(-part, axis=1)[:, :k]
            merged_scores = np.concatenate([best[name][0], np.take_along_axis(part, top, 1)], axis=1)
            merged_ids = np.concatenate([best[name][1], ids[kept][top]], axis=1)
            order = np.argsort(-merged_scores, axis=1)[:, :k]
            best[name] = (np.take_along_axis(merged_scores, order, 1), np.take_along_axis(merged_ids, order, 1))
    found = {name: ids for name, (_, ids) in best.items()}
    np.savez(cache, **found)  # type: ignore[arg-type]
    return found


def truth(
    catalog: LmdbCatalog, gid: int, queries: np.ndarray, cache: Path, population: Faces | None = None, k: int = 10
) -> np.ndarray:
    """The exact top-k face ids per query, over every stored vector, a batch at a time (cached); with
    ``population``, over the vectors as it generated them (float32) rather than as stored, the
    stored ones checked to be those, rounded."""
    if cache.is_file():
        return np.load(cache)
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.full((len(queries), k), -1, np.int64)
    with catalog.log.scan(gid, CHUNK) as (gallery, batches):
        for number, (ids, vectors) in enumerate(
            tqdm(batches, total=-(-gallery.faces // CHUNK), unit="batch", desc="exact search")
        ):
            if population is not None and number * CHUNK < population.size:  # faces a checkpoint test added: as stored
                made = population.chunk(number)
                if len(made) > len(vectors) or np.abs(made - vectors[: len(made)]).max() > 1e-3:
                    raise SystemExit(f"the stored faces of batch {number} are not those the seed makes")
                vectors = np.concatenate([made, vectors[len(made) :]])
            scores = queries @ vectors.T
            top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
            merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
            merged_ids = np.concatenate([best_ids, ids[top]], axis=1)
            order = np.argsort(-merged_scores, axis=1)[:, :k]
            best_scores = np.take_along_axis(merged_scores, order, 1)
            best_ids = np.take_along_axis(merged_ids, order, 1)
    np.save(cache, best_ids)
    return best_ids


def rebuild(data: Path, key: str, settings: Settings) -> dict:
    """``scripts/rebuild_index.py`` on the gallery, as a nightly job runs it."""
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "scripts/rebuild_index.py", "--key", key, "--threads", str(os.cpu_count())],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"rebuild failed: {done.stderr[-2000:]}")
    return {"rebuild_s": round(time.monotonic() - started, 1), "log": done.stdout.splitlines()[-3:]}


SERVE = r"""
import json, os, sys, threading, time
from pathlib import Path
import faiss, numpy as np
sys.path.insert(0, sys.argv[1])
from index.faiss import FaissIndexes
from index.faiss.gallery import CANDIDATES_AT
from index.lmdb import LmdbCatalog
from index.records import NewFace, NewImage
from service.core.config import Settings
from scripts.bench_index import CACHES, INDEX_FILES, SIDES, drop_from_page_cache, unmap

def status():
    # resident memory: all of it, the process's own (anonymous), and the pages of the index files
    # it maps (the catalog's LMDB pages, mapped too, are the page cache of the stored vectors)
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

data, gids, queries = Path(sys.argv[2]), json.loads(sys.argv[3]), np.load(sys.argv[4])
grid, checkpoint = json.loads(sys.argv[5]), sys.argv[6] == "1"
pack, store_as = json.loads(sys.argv[9])  # the faces the checkpoint's adds store: the pack's name and dtype
dim = queries.shape[-1]
settings = Settings.from_env().at(data)
faiss.omp_set_num_threads(1)
base = status()
started = time.monotonic()
catalog = LmdbCatalog(data / "lmdb", 64 << 30)
indexes = FaissIndexes(catalog, data / "indexes", settings.index, serving=True)
indexes.open_all()
opened = time.monotonic() - started
out = {"startup_s": round(opened, 2), "after_open": {k: v - base[k] for k, v in status().items()}}
details = indexes.status(gids[0]).details
out["lists"], out["refine_bytes"] = (details.lists, details.second_code) if details else (0, 0)
out["scan_bytes"] = details.scan_code if details else 0

def timed(gid, rows, k=10):
    times, found = [], []
    for row in rows:
        t = time.perf_counter()
        found.append(indexes.search(gid, row[None, :], k)[1][0])
        times.append(time.perf_counter() - t)
    return np.array(times) * 1000, np.array(found)

touched = [g for g in catalog.images.galleries() if g not in gids]
for gid in touched:  # every other gallery first: the measured ones have not been touched for a while
    indexes.search(gid, queries.reshape(-1, dim)[:1], 10)
out["measured_loaded_before"] = sum(g in indexes.loaded() for g in gids)
def cold(gid):  # not touched for a while: its files have left the page cache too
    for path in (data / "indexes").glob(f"gallery-{gid}.*.*"):
        drop_from_page_cache(path)

per_gallery = []
for n, gid in enumerate(gids):
    rows = queries[n] if queries.ndim == 3 else queries
    cold(gid)
    first, _ = timed(gid, rows[:1])
    timed(gid, rows[1:21])  # warm-up
    times, found = timed(gid, rows)
    per_gallery.append({"gallery": gid, "first_ms": float(first[0]), "times": times.tolist(), "found": found.tolist()})
out["galleries"] = per_gallery
out["after_queries"] = {k: v - base[k] for k, v in status().items()}

if grid:
    gid = gids[0]
    points = []
    faces = indexes.status(gid).vectors
    for nprobe in grid["nprobe"]:
        for candidates in grid["candidates"]:
            # the setting is for ten million faces and scales down with the gallery: ask for as
            # many as makes this gallery's scan return ``candidates``
            indexes.tune(nprobe=nprobe, candidates=max(candidates, -(-candidates * CANDIDATES_AT // faces)))
            times, found = timed(gid, queries[:200])
            point = {"nprobe": nprobe, "candidates": candidates, "times": times.tolist(), "found": found.tolist()}
            points.append(point)
    out["grid"] = points
    indexes.tune(nprobe=settings.index.nprobe, candidates=settings.index.candidates)

filters = json.loads(Path(sys.argv[10]).read_text()) if len(sys.argv) > 10 and sys.argv[10] else None
if filters:
    from service.core.config import Limits
    from service.core.filters import scope_of
    gid, before = gids[0], status()
    unfiltered_times, unfiltered_found = timed(gid, queries)
    wide = [indexes.search(gid, row[None, :], 1000)[1][0].tolist() for row in queries[:50]]
    out["unfiltered"] = {"times": unfiltered_times.tolist()}
    out["filters"] = {}
    for name, fields in filters.items():
        scope = scope_of(fields, Limits())
        t = time.perf_counter()
        allowed = catalog.images.select(gid, scope)
        selected_ms = (time.perf_counter() - t) * 1000
        count = allowed.count
        rows = queries[:5] if "not indexed" in name else queries
        times, found = [], []
        for row in rows:
            t = time.perf_counter()
            found.append(indexes.search(gid, row[None, :], 10, scope)[1][0].tolist())
            times.append((time.perf_counter() - t) * 1000)
        kept = lambda ids: [int(i) for i in ids if i >= 0 and allowed.contains(np.array([i]))[0]][:10]
        out["filters"][name] = {
            "faces": count, "select_ms": selected_ms, "times": times, "found": found,
            "naive10": [kept(f) for f in unfiltered_found.tolist()], "naive1000": [kept(f) for f in wide],
        }
    out["filters_memory"] = {k: v - before[k] for k, v in status().items()}
    for name, fields in filters.items():  # after the memory: each reads every allowed vector
        allowed, exact_times = catalog.images.select(gid, scope_of(fields, Limits())), []
        for row in queries[: (3 if allowed.count > 100_000 else 20) if allowed.count else 0]:  # none: no exact side
            t = time.perf_counter()
            chosen = allowed.ids().tolist()
            vectors = catalog.images.vectors(gid, chosen)
            matrix = np.stack([vectors[i] for i in chosen])
            np.argsort(-(matrix @ row))[:10]
            exact_times.append((time.perf_counter() - t) * 1000)
        out["filters"][name]["exact_times"] = exact_times

if len(gids) == 1 and not filters:  # the re-rank's reads from a catalog out of the page cache, as at ten million faces
    from index.lmdb.environment import READERS
    gid, adaptive, path = gids[0], catalog.env.spread_above, data / "lmdb" / "data.mdb"
    reads = {cache: {side: [] for side in SIDES} for cache in CACHES}
    for cache in CACHES:
        for _ in range(2):  # each side twice, in turn; the adaptive one starts from what the spread one left
            for side, threshold in zip(SIDES, (float("inf"), 0.0, adaptive)):
                catalog.env.spread_above = threshold  # this handle's, not the module's
                if cache == "cold":
                    unmap(path)
                    drop_from_page_cache(path)
                reads[cache][side] += timed(gid, queries[:200])[0].tolist()
    catalog.env.spread_above = adaptive
    out["catalog_reads"] = {"readers": READERS, **reads}

if checkpoint:
    gid = gids[0]
    rng = np.random.default_rng(7)
    def add(n):
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        faces = [NewFace([0.0, 0.0, 100.0, 100.0], 0.9, v) for v in vectors.astype(store_as)]
        t = time.perf_counter()
        catalog.images.add(gid, NewImage("bench.jpg", "image/jpeg", {}, "bench", pack, faces))
        indexes.sync(gid)
        return (time.perf_counter() - t) * 1000
    for _ in range(100):
        add(100)  # changes for the checkpoint to fold
    before_adds = [add(1) for _ in range(50)]
    before_search, _ = timed(gid, queries[:100])
    before = status()
    saver = threading.Thread(target=indexes.save_all)
    t = time.monotonic()
    saver.start()
    during_adds, during_search, own = [], [], before["RssAnon"]
    while saver.is_alive():
        during_adds.append(add(1))
        s, _ = timed(gid, queries[len(during_search) % 100 : len(during_search) % 100 + 1])
        during_search.extend(s.tolist())
        own = max(own, status()["RssAnon"])
    fold_s = time.monotonic() - t
    out["checkpoint"] = {
        # the process's own memory at its highest while the fold ran: a second copy of the index would show here
        "fold_s": round(fold_s, 2), "peak_memory_growth": status()["VmHWM"] - before["VmHWM"],
        "own_memory_growth": own - before["RssAnon"],
        "adds_before_ms": before_adds, "adds_during_ms": during_adds,
        "search_before_ms": before_search.tolist(), "search_during_ms": during_search,
    }

if sys.argv[7] == "1":  # search while scripts/rebuild_index.py runs beside
    import subprocess
    gid = gids[0]
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data)}
    key = json.loads(sys.argv[8])
    before, _ = timed(gid, queries[:200])
    t = time.monotonic()
    command = [sys.executable, "scripts/rebuild_index.py", "--key", key]
    child = subprocess.Popen(command, cwd=sys.argv[1], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    during, n = [], 0
    while child.poll() is None:
        s, _ = timed(gid, queries[n % len(queries) : n % len(queries) + 1])
        during.extend(s.tolist())
        n += 1
        time.sleep(0.02)
    rebuilt = time.monotonic() - t
    after, _ = timed(gid, queries[:200])
    out["rebuild_while_serving"] = {"rebuild_s": round(rebuilt, 1), "exit": child.returncode,
        "before_ms": before.tolist(), "during_ms": during, "after_ms": after.tolist(),
        "generation": indexes.status(gid).generation, "memory": {k: v - base[k] for k, v in status().items()}}
indexes.close()
print("RESULT " + json.dumps(out))
"""


def serve(
    data: Path,
    gids: list[int],
    queries: np.ndarray,
    grid: dict | None,
    checkpoint: bool,
    rebuild_key: str | None,
    pack: ModelPack,
    filters: dict | None = None,
) -> dict:
    """The measurements of a fresh serving process (its own memory, nothing inherited from this one)."""
    path = data / "queries.npy"
    np.save(path, queries)
    spec = data / "filters.json"
    if filters:
        spec.write_text(json.dumps(filters))
    command = [sys.executable, "-c", SERVE, str(ROOT), str(data), json.dumps(gids), str(path), json.dumps(grid or {}),
               "1" if checkpoint else "0", "1" if rebuild_key else "0", json.dumps(rebuild_key),
               json.dumps([pack.name, pack.store_as]), str(spec) if filters else ""]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"the serving process failed: {done.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def workers_memory(data: Path, key: str, workers: int) -> list[dict]:
    """Each worker's memory in a real server (``workers`` processes) after searches on the gallery:
    resident, and proportional (PSS, a shared page split among the processes that map it)."""
    from service.harness.live import LiveServer
    from service.harness.photos import b64, package_photo

    env = {"FACE_SEARCH_WORKERS": str(workers), "FACE_SEARCH_API_KEY": key, "FACE_SEARCH_API_SECRET": "bench",
           "FACE_SEARCH_RATE_LIMIT": "0", "FACE_SEARCH_INDEX_SAVE_SECONDS": "0"}  # fmt: skip
    server = LiveServer(data, env).start(timeout=600)
    try:
        body = {"image": {"base64": b64(package_photo("t1.jpg"))}, "face": "all"}
        for _ in range(10 * workers):
            server.call("POST", "/search", key, "bench", json=body)
        pids = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout
        rows = []
        for pid in pids.split():
            fields = {}
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) * 1024
            rows.append({name: fields[name] for name in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean")})
        return rows
    finally:
        server.stop()


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact top-10 found in the top-10 answered, over the queries."""
    return round(float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, exact, strict=True)])), 4)


def percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def data_dir(args: argparse.Namespace, name: str, pack: ModelPack) -> Path:
    """Where a run keeps its catalog and index: buffalo_s's as it always did, another pack's apart."""
    return args.data / (name if pack.name == "buffalo_s" else f"{name}-{pack.name}")


def one_gallery(size: int, args: argparse.Namespace, settings: Settings, pack: ModelPack) -> dict:
    data = data_dir(args, f"n{size}", pack)
    catalog = LmdbCatalog(data / "lmdb", 64 << 30)
    key = f"bench-{size}"
    record = catalog.keys.get(key) or catalog.keys.create(key, "unused", None, "bench")
    population = Faces(size, size, pack)
    fill(catalog, record.gallery, population, f"{size:,} faces", pack)
    queries = population.queries(args.queries)
    exact = truth(catalog, record.gallery, queries, data / f"truth-{args.queries}.npy")
    generated = (
        truth(catalog, record.gallery, queries, data / f"truth-float32-{args.queries}.npy", population)
        if pack.store_as != "float32"
        else exact
    )
    lmdb_bytes = (data / "lmdb" / "data.mdb").stat().st_size
    catalog.close()
    built = rebuild(data, key, settings) if not (data / "indexes").exists() else {"rebuild_s": None}
    grid = {"nprobe": [256, 384, 512, 768], "candidates": [1600, 3200, 6400, 12800]} if args.grid else None
    served = serve(
        data,
        [record.gallery],
        queries,
        grid,
        checkpoint=True,
        rebuild_key=key if args.rebuild_while_serving else None,
        pack=pack,
    )
    gallery = served["galleries"][0]
    resident = served["after_queries"]["Index"]
    result = {
        "size": size,
        "pack": pack.name,
        "dim": population.dim,
        "stored_as": pack.store_as,
        "exact_stored_recall@10": recall(exact, generated),  # exact search over the stored vectors
        "storage": settings.index.storage,
        "scan_bytes": served["scan_bytes"],
        "lists": served["lists"],
        "nprobe": settings.index.nprobe,
        "refine_bytes": served["refine_bytes"],
        "candidates": candidates_for(size, settings.index),  # what the scan returns at this size
        "rerank": settings.index.rerank,
        "lmdb_bytes": lmdb_bytes,
        "index_file_bytes": sum(p.stat().st_size for p in (data / "indexes").iterdir() if p.suffix in INDEX_FILES),
        **built,
        "startup_s": served["startup_s"],
        "resident_bytes": resident,  # the serving index: the process's own memory and its mapped index pages
        "resident_anon_bytes": served["after_queries"]["RssAnon"],
        "resident_index_file_bytes": served["after_queries"]["IndexFiles"],
        "resident_all_bytes": served["after_queries"]["VmRSS"],  # with the catalog's pages it touched
        "bytes_per_face": round(resident / size, 1),
        **percentiles(gallery["times"]),
        "first_search_ms": round(gallery["first_ms"], 2),
        "recall@10": recall(np.array(gallery["found"]), generated),
    }
    if grid:
        result["grid"] = [
            {"nprobe": p["nprobe"], "candidates": p["candidates"], **percentiles(p["times"]),
             "recall@10": recall(np.array(p["found"]), generated[:200])}
            for p in served["grid"]
        ]  # fmt: skip
    # the same 200 queries, each side (SIDES) from a cold and a warm catalog
    reads = served["catalog_reads"]
    result["catalog_reads"] = {
        "readers": reads["readers"],
        **{cache: {side: percentiles(reads[cache][side]) for side in SIDES} for cache in CACHES},
    }
    point = served["checkpoint"]
    result["checkpoint"] = {
        "fold_s": point["fold_s"],
        "peak_memory_growth_bytes": point["peak_memory_growth"],  # with the mapped pages the fold read
        "own_memory_growth_bytes": point["own_memory_growth"],
        "adds_before": percentiles(point["adds_before_ms"]),
        "adds_during": percentiles(point["adds_during_ms"]),
        "searches_before": percentiles(point["search_before_ms"]),
        "searches_during": percentiles(point["search_during_ms"]),
    }
    if args.workers_memory:
        result["workers_memory"] = {n: workers_memory(data, key, n) for n in (1, 2)}
    if "rebuild_while_serving" in served:
        during = served["rebuild_while_serving"]
        result["rebuild_while_serving"] = {
            "rebuild_s": during["rebuild_s"],
            "exit": during["exit"],
            "before": percentiles(during["before_ms"]),
            "during": percentiles(during["during_ms"]),
            "after": percentiles(during["after_ms"]),
        }
    return result


def metadata_index_bytes(catalog: LmdbCatalog) -> int:
    """Bytes of the catalog's metadata index (its postings, value counts and key registry)."""

    def size(txn) -> int:
        env = catalog.env
        return sum(
            (stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]) * stat["psize"]
            for stat in (txn.stat(env.db[name]) for name in ("postings", "value_counts", "filter_keys"))
        )

    return catalog.env.read(size)


def filtered(size: int, args: argparse.Namespace, settings: Settings, pack: ModelPack) -> dict:
    """Filters mode (see the module): one gallery of ``size`` faces in photos with metadata."""
    data = data_dir(args, f"f{size}", pack)
    catalog = LmdbCatalog(data / "lmdb", 64 << 30)
    key = f"filters-{size}"
    record = catalog.keys.get(key) or catalog.keys.create(key, "unused", None, "bench")
    photos = Photos(Faces(size, size, pack), seed=size)
    fill_photos(catalog, record.gallery, photos, f"{size:,} faces in photos", pack)
    if catalog.images.face_ids(record.gallery)[-1] != size:
        raise SystemExit(f"{data}: faces are not numbered 1..{size}: remove it and start again")
    queries = photos.population.queries(args.queries)
    exact = filtered_truth(photos, queries, data / f"filtered-truth-{args.queries}.npz")
    index_bytes = metadata_index_bytes(catalog)
    lmdb_bytes = (data / "lmdb" / "data.mdb").stat().st_size
    catalog.close()
    built = rebuild(data, key, settings) if not (data / "indexes").exists() else {"rebuild_s": None}
    served = serve(
        data, [record.gallery], queries, None, checkpoint=False, rebuild_key=None, pack=pack, filters=FILTERS
    )
    unfiltered = percentiles(served["unfiltered"]["times"])
    rows = {}
    for name, got in served["filters"].items():
        truth_rows = exact[name][: len(got["found"])]
        rows[name] = {
            "faces": got["faces"],
            "share": round(got["faces"] / size, 6),
            "select_ms": round(got["select_ms"], 2),
            **percentiles(got["times"]),
            "recall@10": recall_of(got["found"], truth_rows),
            "exact": percentiles(got["exact_times"]) if got["exact_times"] else {"p50_ms": None, "p99_ms": None},
            "naive10_recall@10": recall_of(got["naive10"], exact[name]),
            "naive1000_recall@10": recall_of(got["naive1000"], exact[name][:50]),
            "naive10_short": round(float(np.mean([len(r) < min(10, got["faces"]) for r in got["naive10"]])), 4),
        }
    return {
        "size": size,
        "photos": photos.count,
        **built,
        "lmdb_bytes": lmdb_bytes,
        "metadata_index_bytes": index_bytes,
        "metadata_index_bytes_per_face": round(index_bytes / size, 1),
        "resident_growth_bytes": served["filters_memory"]["RssAnon"],
        "unfiltered": unfiltered,
        "filters": rows,
    }


def recall_of(found: list[list[int]], exact: np.ndarray) -> float:
    """recall@10 where the exact answer may hold fewer than 10 (a filter that keeps fewer faces)."""
    shares = []
    for answer, truth_row in zip(found, exact, strict=False):
        wanted = {int(i) for i in truth_row[:10] if i >= 0}
        shares.append(len(set(answer[:10]) & wanted) / len(wanted) if wanted else 1.0)
    return round(float(np.mean(shares)), 4)


def filtered_table(report: dict) -> str:
    """The filtered-search table (docs/benchmarks/): each filter against the targets."""
    lines = []
    for r in report.get("filtered", []):
        u = r["unfiltered"]
        lines += [
            f"{r['size']:,} faces in {r['photos']:,} photos; unfiltered p50 / p99 {u['p50_ms']} / {u['p99_ms']} ms; "
            f"metadata index {r['metadata_index_bytes_per_face']} B/face in the catalog, "
            f"+{r['resident_growth_bytes'] / 2**20:.0f} MiB resident after the filtered searches",
            "",
            "| filter | faces kept | recall@10 | p50 / p99 ms | p99 / unfiltered p99 "
            "| exact over the kept p50 / p99 ms | selection ms | naive top-10 recall (short answers) "
            "| naive top-1000 recall |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, f in r["filters"].items():
            lines.append(
                f"| {name} | {f['faces']:,} ({100 * f['share']:.2f}%) | {f['recall@10']} "
                f"| {f['p50_ms']} / {f['p99_ms']} | {f['p99_ms'] / u['p99_ms']:.2f} "
                f"| {f['exact']['p50_ms']} / {f['exact']['p99_ms']} | {f['select_ms']} "
                f"| {f['naive10_recall@10']} ({100 * f['naive10_short']:.0f}%) | {f['naive1000_recall@10']} |"
            )
        lines.append("")
    return "\n".join(lines)


def many_galleries(count: int, faces: int, args: argparse.Namespace, settings: Settings, pack: ModelPack) -> dict:
    data = data_dir(args, f"g{count}x{faces}", pack)
    catalog = LmdbCatalog(data / "lmdb", 64 << 30)
    gids = []
    for number in tqdm(range(count), unit="gallery", desc=f"storing {count} x {faces:,}"):
        key = f"event-{number}"
        record = catalog.keys.get(key) or catalog.keys.create(key, "unused", None, "bench")
        have = catalog.images.gallery(record.gallery).faces  # a stopped run stored whole images
        if have < faces:
            vectors = Faces(faces, 10_000 + number, pack).chunk(0).astype(pack.store_as)  # one chunk at most
            for start in range(have, faces, PER_IMAGE):
                batch = [NewFace([0.0, 0.0, 100.0, 100.0], 0.9, v) for v in vectors[start : start + PER_IMAGE]]
                catalog.images.add(record.gallery, NewImage("bench.jpg", "image/jpeg", {}, "bench", pack.name, batch))
        gids.append(record.gallery)
    lmdb_bytes = (data / "lmdb" / "data.mdb").stat().st_size
    catalog.close()
    if not (data / "indexes").exists():  # the checkpoints a serving process writes, once
        catalog = LmdbCatalog(data / "lmdb", 64 << 30)
        indexes = FaissIndexes(catalog, data / "indexes", replace(settings.index, memory_bytes=1 << 30), serving=True)
        for gid in tqdm(gids, unit="gallery", desc="first checkpoints"):
            indexes.sync(gid)
            indexes.checkpointer.checkpoint(gid)
        indexes.close()
        catalog.close()
    rng = np.random.default_rng(5)
    sample = sorted(rng.choice(gids, size=min(50, len(gids)), replace=False).tolist())
    queries = np.stack([Faces(faces, 10_000 + gids.index(g), pack).queries(30) for g in sample])
    served = serve(data, sample, queries, None, checkpoint=False, rebuild_key=None, pack=pack)
    first = [g["first_ms"] for g in served["galleries"]]
    warm = [t for g in served["galleries"] for t in g["times"]]
    return {
        "pack": pack.name,
        "galleries": count,
        "faces_per_gallery": faces,
        "lmdb_bytes": lmdb_bytes,
        "startup_s": served["startup_s"],
        "resident_bytes": served["after_queries"]["Index"],
        "resident_all_bytes": served["after_queries"]["VmRSS"],
        "measured_loaded_before": served["measured_loaded_before"],
        "first_search": percentiles(first),
        "warm_search": percentiles(warm),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-default", action="store_true", help="one gallery per size, the service's settings")
    parser.add_argument(
        "--pack", default="buffalo_s", help="faces shaped like this pack's vectors, stored as it stores them"
    )
    parser.add_argument("--sizes", default="1000000,3000000,10000000")
    parser.add_argument("--galleries", type=int, help="many galleries of --faces-per-gallery faces")
    parser.add_argument("--faces-per-gallery", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--grid", action="store_true", help="also sweep nprobe and the candidates of the scan")
    parser.add_argument("--filters", action="store_true", help="filtered search: photos with metadata (FILTERS)")
    parser.add_argument("--rebuild-while-serving", action="store_true")
    parser.add_argument("--workers-memory", action="store_true", help="memory of each worker of a real server")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bench", help="kept between runs (resumable)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_index")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    pack = load_pack(args.pack, check=False)  # its manifest: dims and stored type, no model is run
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = previous(args.out.with_suffix(".json"))
    report.update(cores=os.cpu_count(), index_settings=asdict(settings.index))
    if args.filters:
        for size in (int(s) for s in args.sizes.split(",")):
            row = filtered(size, args, settings, pack)
            runs = [r for r in report.setdefault("filtered", []) if r["size"] != size] + [row]
            report["filtered"] = sorted(runs, key=lambda r: r["size"])
            args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
        print(filtered_table(report))
        return 0
    if args.galleries:
        report["galleries"] = many_galleries(args.galleries, args.faces_per_gallery, args, settings, pack)
    else:
        for size in (int(s) for s in args.sizes.split(",")):
            row = one_gallery(size, args, settings, pack)
            kept = [r for r in report["sizes"] if (r["size"], row_pack(r)) != (size, pack.name)]
            report["sizes"] = sorted([*kept, row], key=lambda r: (row_pack(r), r["size"]))
            args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(table(report))
    plot(report, args.out.with_suffix(".png"))
    for row in report["sizes"]:
        reads = row.get("catalog_reads", {})  # rows of runs before it: none
        for cache in CACHES if reads else ():
            sides = ", ".join(
                f"{name} {reads[cache][side]['p50_ms']} / {reads[cache][side]['p99_ms']}"
                for side, name in SIDES.items()
            )
            print(f"{row['size']} faces, catalog {cache}, p50 / p99 ms ({reads['readers']} readers): {sides}")
    for row in report["sizes"]:  # the last lines, as the issue asks
        print(
            f"{row['size']} faces ({row_pack(row)}): resident {row['resident_bytes'] / 2**20:.0f} MiB "
            f"({row['bytes_per_face']:.0f} B/face), p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"recall@10 {row['recall@10']}"
        )
    if line := report.get("galleries"):
        print(
            f"{line['galleries']} x {line['faces_per_gallery']} faces: resident {line['resident_bytes'] / 2**20:.0f} "
            f"MiB, first search p50 {line['first_search']['p50_ms']} ms p99 {line['first_search']['p99_ms']} ms, "
            f"warm p50 {line['warm_search']['p50_ms']} ms, start-up {line['startup_s']} s"
        )
    return 0


def row_pack(row: dict) -> str:
    """The pack a report's row measured (rows of runs before packs were named: buffalo_s)."""
    return row.get("pack", "buffalo_s")


def previous(path: Path) -> dict:
    """The report of earlier runs: sizes are measured one run at a time (10M alone takes hours)
    and the table and plot show them all."""
    report = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("sizes", [])
    return report


def table(report: dict) -> str:
    """The report's table (docs/benchmarks/): one gallery per size, then many small galleries."""
    lines = [
        "| faces | storage, lists, nprobe, second code, candidates, exact | resident MiB (B/face) | p50 / p99 ms "
        "| recall@10 | start-up s "
        "| rebuild s | checkpoint s (adds p99 during / before ms) | LMDB GiB |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["sizes"]:
        point = r["checkpoint"]
        faces = f"{r['size']:,}" if row_pack(r) == "buffalo_s" else f"{r['size']:,} ({row_pack(r)}, {r['dim']}-d)"
        lines.append(
            f"| {faces} | {r['storage']}, {r.get('lists', '-')}, {r['nprobe']}, {refine(r)}, {r['rerank']} "
            f"| {r['resident_bytes'] / 2**20:,.0f} ({r['bytes_per_face']:.0f}) | {r['p50_ms']} / {r['p99_ms']} "
            f"| {r['recall@10']} | {r['startup_s']} | {r['rebuild_s'] or '-'} "
            f"| {point['fold_s']} ({point['adds_during']['p99_ms']} / {point['adds_before']['p99_ms']}) "
            f"| {r['lmdb_bytes'] / 2**30:.1f} |"
        )
    if g := report.get("galleries"):
        lines += [
            "",
            "| galleries x faces | resident MiB | first search p50 / p99 ms | warm p50 / p99 ms | start-up s "
            "| LMDB GiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| {g['galleries']:,} x {g['faces_per_gallery']:,} | {g['resident_bytes'] / 2**20:,.0f} "
            f"| {g['first_search']['p50_ms']} / {g['first_search']['p99_ms']} "
            f"| {g['warm_search']['p50_ms']} / {g['warm_search']['p99_ms']} | {g['startup_s']} "
            f"| {g['lmdb_bytes'] / 2**30:.1f} |",
        ]
    return "\n".join(lines)


def refine(row: dict) -> str:
    """The scan codes' bytes where not 64, then the second code and its candidates, as the table shows
    them (rows before it: none)."""
    code = row.get("refine_bytes", 0)
    scan = f"scan {row['scan_bytes']} B, " if row.get("scan_bytes", 64) not in (0, 64) else ""
    return scan + (f"PQ{code}x8, {row['candidates']}" if code else "-, -")


def plot(report: dict, path: Path) -> None:
    """Memory, latency and build time against gallery size, the many-galleries shape marked apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["sizes"]
    if not rows:
        return
    sizes = [r["size"] for r in rows]
    figure, (memory, latency, build) = plt.subplots(1, 3, figsize=(13, 4))
    memory.plot(sizes, [r["resident_bytes"] / 2**30 for r in rows], "o-", label="one gallery")
    latency.plot(sizes, [r["p50_ms"] for r in rows], "o-", label="p50, one gallery")
    latency.plot(sizes, [r["p99_ms"] for r in rows], "s--", label="p99, one gallery")
    build.plot(sizes, [(r["rebuild_s"] or float("nan")) / 60 for r in rows], "o-", label="rebuild")
    build.plot(sizes, [r["startup_s"] / 60 for r in rows], "s--", label="start-up")
    if g := report.get("galleries"):
        total = g["galleries"] * g["faces_per_gallery"]
        shape = f"{g['galleries']:,} x {g['faces_per_gallery']:,}"
        memory.plot([total], [g["resident_bytes"] / 2**30], "D", color="tab:red", label=shape)
        latency.plot([total], [g["first_search"]["p50_ms"]], "D", color="tab:red", label=f"first search p50, {shape}")
        latency.plot([total], [g["warm_search"]["p50_ms"]], "^", color="tab:red", label=f"warm p50, {shape}")
    for axis, label in ((memory, "resident memory, GiB"), (latency, "single-query search, ms"), (build, "minutes")):
        axis.set(xscale="log", xlabel="faces", ylabel=label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"scripts/bench_index.py on {report['cores']} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
