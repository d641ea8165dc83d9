"""Synthetic galleries at scale for the index benchmarks (scripts/bench_index.py,
bench_cluster.py, bench_persons.py): faces shaped like real embeddings, generated a chunk at a
time from a seed and stored straight into a real catalog, photos with metadata that each filter
of ``FILTERS`` keeps a known share of, the exact answers to measure recall against, and the
figures the reports print (recall@10, p50/p99).

Identities of five faces each, at cosine 0.6-0.8 to their centre; identities in lookalike
groups of 20 (centre at cosine 0.65-0.75 to the group's), the groups' centres spread over a
32-dimensional subspace, so a person's nearest strangers sit at about 0.3 as with buffalo_s.
A run stopped half-way goes on from what is stored: every chunk is regenerated from the seed
alone, so the generator must not change (stored galleries and cached answers depend on it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from index.catalog import Catalog
from index.filters import DEFAULT_COLLECTION, Facts, created_seconds, matches
from index.records import NewFace, NewImage
from models.packs import ModelPack, fused
from service.core.config import Limits
from service.core.filters import scope_of
from service.harness.live import ROOT
from service.harness.synthetic import around, unit

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
            made = around(self.groups[rows % len(self.groups)], 0.65, 0.75, rng, np.float32)
            take = made[identity - start : min(first + count, rows[-1] + 1) - start]
            parts.append(take)
            identity += len(take)
        return np.concatenate(parts)

    def chunk(self, number: int) -> np.ndarray:
        """Faces ``number * CHUNK`` onwards, identity by identity."""
        start, stop = number * CHUNK, min(self.size, (number + 1) * CHUNK)
        identities = np.arange(start, stop) // PER_IDENTITY
        centres = self.centres(int(identities[0]), int(identities[-1]) - int(identities[0]) + 1)
        return around(centres[identities - identities[0]], 0.6, 0.8, self.rng(2, number), np.float32)

    def queries(self, count: int) -> np.ndarray:
        """Unseen faces of enrolled identities (the same identities in every stream)."""
        rng = np.random.default_rng([self.seed, 3])
        chosen = np.sort(rng.choice(self.identities, size=min(count, self.identities), replace=False))
        block = CHUNK // PER_IDENTITY  # identities made at a time: each block once, not once per query
        centres = [
            self.centres(first, min(block, self.identities - first))[chosen[chosen // block == first // block] - first]
            for first in np.unique(chosen // block) * block
        ]
        return around(np.concatenate(centres), 0.6, 0.8, rng if not self.stream else self.rng(3), np.float32)


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


def fill(catalog: Catalog, gid: int, population: Faces, label: str, pack: ModelPack) -> None:
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


Best = tuple[np.ndarray, np.ndarray]  # per query, the best scores so far and their face ids


def nothing_yet(queries: int, k: int) -> Best:
    return np.full((queries, k), -np.inf, np.float32), np.full((queries, k), -1, np.int64)


def kept_best(best: Best, scores: np.ndarray, ids: np.ndarray, k: int) -> Best:
    """The best ``k`` of ``best`` and of a block's ``scores`` (a row per query, a column per face
    of ``ids``), best first."""
    top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
    merged_scores = np.concatenate([best[0], np.take_along_axis(scores, top, 1)], axis=1)
    merged_ids = np.concatenate([best[1], ids[top]], axis=1)
    order = np.argsort(-merged_scores, axis=1)[:, :k]
    return np.take_along_axis(merged_scores, order, 1), np.take_along_axis(merged_ids, order, 1)


def generated_truth(population: Faces, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The exact top-k face ids per query over the faces as generated (float32), from the generator
    alone: face ids are 1.. in the order stored (``fill`` into a fresh gallery)."""
    best = nothing_yet(len(queries), k)
    for number in tqdm(range(-(-population.size // CHUNK)), unit="chunk", desc="exact search"):
        vectors = population.chunk(number)
        best = kept_best(best, queries @ vectors.T, number * CHUNK + 1 + np.arange(len(vectors)), k)
    return best[1]


def filtered_truth(photos: Photos, queries: np.ndarray, cache: Path, k: int = 10) -> dict[str, np.ndarray]:
    """For each filter, the exact top-k face ids per query among the faces it keeps, from the
    generator alone (one pass over its chunks): face ids are 1.. in the order stored."""
    if cache.is_file():
        return dict(np.load(cache))
    scopes = {name: scope_of(fields, Limits()).expr() for name, fields in FILTERS.items()}
    best = {name: nothing_yet(len(queries), k) for name in FILTERS}
    for number in tqdm(range(-(-photos.population.size // CHUNK)), unit="chunk", desc="exact search, filtered"):
        vectors, drawn = photos.chunk(number)
        ids = number * CHUNK + 1 + np.arange(len(vectors))
        scores = queries @ vectors.T
        for name, expr in scopes.items():
            passed = np.array([matches(expr, Facts(m, c, created_seconds(t))) for m, c, t in drawn], bool)
            kept = np.flatnonzero(np.repeat(passed, FACES_PER_PHOTO))
            if len(kept):
                best[name] = kept_best(best[name], scores[:, kept], ids[kept], k)
    found = {name: ids for name, (_, ids) in best.items()}
    np.savez(cache, **found)  # type: ignore[arg-type]
    return found


def rebuild(data: Path, key: str) -> dict:
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


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact top-10 found in the top-10 answered, over the queries."""
    return round(float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, exact, strict=True)])), 4)


def percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def recall_of(found: list[list[int]], exact: np.ndarray) -> float:
    """recall@10 where the exact answer may hold fewer than 10 (a filter that keeps fewer faces)."""
    shares = []
    for answer, truth_row in zip(found, exact, strict=False):
        wanted = {int(i) for i in truth_row[:10] if i >= 0}
        shares.append(len(set(answer[:10]) & wanted) / len(wanted) if wanted else 1.0)
    return round(float(np.mean(shares)), 4)
