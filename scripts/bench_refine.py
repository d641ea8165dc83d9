"""Measure, before building it, whether a finer second code ranking an IVF's candidates
reaches recall@10 0.99 at millions of faces.

  python scripts/bench_refine.py --size 3000000 [--data DIR] [--queries 300] [--out reports/bench_refine]
  sweeps: --nprobe 256,512  --candidates 800,1600,3200  --codes 0,64,128  --exact 100,200

Why: at three and ten million faces the service's 64-byte codes rank too many lookalike
strangers above a person's true neighbours, so recall only climbs with thousands of
candidates, each re-scored with a float vector read from a catalog larger than the page cache
(README, "Large galleries"). The design measured here keeps the ``pq4`` fast-scan IVF for the
scan, ranks its R candidates by a product quantiser of M bytes per face over the raw vector,
and scores only the best T exactly. It runs on what ``bench_index.py`` left in ``<data>/n<N>``:
the catalog, its queries and exact top 10, and a ``pq4`` index (run bench_index with
``FACE_SEARCH_IVF_STORAGE=pq4``).

The quantiser is trained on 100,000 stored vectors. The candidates' codes are computed from
their stored vectors before the timed pass: the codes a build would have stored. Each stage is
timed per query on one thread (the scan; the code ranking, FAISS's own IndexPQ over the
candidates' codes; reading the T vectors from LMDB and scoring them). Before each setting the
catalog is dropped from the page cache, so its reads are cold, an upper bound (a server's cache
keeps part of it; the kernel keeps pages another process maps, so run it with no server on the
data); then the same reads are timed again warm, a lower bound. Memory is an estimate of what
the serving index would hold: the mapped base file, the packed copy (as the service counts it,
codes and ids) and the codes
with their ids.

Writes ``<out>.json``; its last line is the fastest setting that reaches 0.99, if one does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from index.faiss.files import IndexFiles  # noqa: E402
from index.faiss.vector_index import IndexState, VectorIndex  # noqa: E402
from index.lmdb import LmdbCatalog  # noqa: E402
from scripts.bench_index import drop_from_page_cache, percentiles, recall  # noqa: E402

TRAINING = 100_000  # stored vectors the second code is trained on


class Stored:
    """The gallery's catalog, read as the service's re-rank reads it."""

    def __init__(self, data: Path, size: int) -> None:
        self.path = data / "lmdb"
        self.catalog = LmdbCatalog(self.path, 64 << 30)
        record = self.catalog.keys.get(f"bench-{size}")
        if record is None:
            raise SystemExit(f"no gallery of {size:,} faces in {data}: run scripts/bench_index.py first")
        self.gid = record.gallery

    def cold(self) -> None:
        """Drop the catalog from the page cache, so the exact reads cost what they cost a query
        nobody made before. Pages this process maps stay cached, hence the reopening; a server
        still mapping the catalog keeps its pages too (run this with no server on the data)."""
        self.catalog.close()
        drop_from_page_cache(self.path / "data.mdb")
        self.catalog = LmdbCatalog(self.path, 64 << 30)

    def vectors(self, ids: list[int]) -> np.ndarray:
        found = self.catalog.images.vectors(self.gid, ids)
        return np.stack([found[i] for i in ids]).astype(np.float32)

    def sample(self, count: int) -> np.ndarray:
        ids = self.catalog.images.face_ids(self.gid)
        chosen = np.random.default_rng(0).choice(ids, min(count, len(ids)), replace=False)
        return self.vectors(sorted(chosen.tolist()))


def served_index(data: Path, stored: Stored) -> tuple[VectorIndex, Path]:
    """The gallery's index as a server opens it: the generation the catalog committed, its base
    file mapped and, for ``pq4``, packed for the fast-scan kernels; and that file."""
    if not (data / "indexes").is_dir():  # IndexFiles would create it, and bench_index then skip its rebuild
        raise SystemExit(f"no index in {data}: run scripts/bench_index.py first")
    generation = stored.catalog.images.gallery(stored.gid).index_generation
    pointer = IndexFiles(data / "indexes").pointer(stored.gid, generation)
    if pointer is None:
        raise SystemExit(f"no index of generation {generation} in {data / 'indexes'}")
    state = IndexState(**pointer.state)
    if state.storage != "pq4":
        raise SystemExit(f"{pointer.file} is {state.storage}, not pq4: rebuild with FACE_SEARCH_IVF_STORAGE=pq4")
    path = data / "indexes" / pointer.file
    return VectorIndex.load(path, state), path


def scan(served: VectorIndex, queries: np.ndarray, nprobe: int, count: int) -> tuple[list[list[int]], list[float]]:
    """Each query's candidates in the codes' order, and the scan's time, one query at a time."""
    served.set_nprobe(nprobe)
    found, times = [], []
    for row in queries:
        started = time.perf_counter()
        ids = served.searched().search(row[None, :], count)[1][0]
        times.append((time.perf_counter() - started) * 1000)
        found.append([int(i) for i in ids if i >= 0])
    return found, times


class Codes:
    """Candidates' codes of M bytes per face, ranked by FAISS's asymmetric distance."""

    def __init__(self, bytes_per_face: int, training: np.ndarray) -> None:
        self.index = faiss.IndexPQ(training.shape[1], bytes_per_face, 8, faiss.METRIC_INNER_PRODUCT)
        self.index.train(training)
        self.by_id: dict[int, np.ndarray] = {}

    def encode(self, ids: list[int], vectors: np.ndarray) -> None:
        self.by_id.update(zip(ids, self.index.sa_encode(vectors), strict=True))

    def best(self, query: np.ndarray, candidates: list[int], count: int) -> tuple[list[int], float]:
        self.index.reset()
        self.index.add_sa_codes(np.stack([self.by_id[i] for i in candidates]))
        started = time.perf_counter()
        order = self.index.search(query[None, :], min(count, len(candidates)))[1][0]
        took = (time.perf_counter() - started) * 1000
        return [candidates[k] for k in order if k >= 0], took


def exact(stored: Stored, query: np.ndarray, ids: list[int]) -> tuple[list[int], float]:
    """The service's re-rank: read the vectors, score them, keep the top 10."""
    started = time.perf_counter()
    scores = stored.vectors(ids) @ query
    top = [ids[k] for k in np.argsort(-scores)[:10]]
    return top, (time.perf_counter() - started) * 1000


def answer(
    stored: Stored,
    queries: np.ndarray,
    truth: np.ndarray,
    scanned: tuple[list[list[int]], list[float]],
    coder: Codes | None,
    keep: int,
) -> dict:
    """One setting's answers: recall, and each stage's time with the catalog cold, then warm."""
    candidates, scan_ms = scanned
    stored.cold()
    found, kept, ranked, read = [], [], [], []
    for query, mine in zip(queries, candidates, strict=True):
        best, took = coder.best(query, mine, keep) if coder else (mine[:keep], 0.0)
        top, reading = exact(stored, query, best)
        found.append(top)
        kept.append(best)
        ranked.append(took)
        read.append(reading)
    warm = [exact(stored, query, best)[1] for query, best in zip(queries, kept, strict=True)]
    before = np.array(scan_ms) + np.array(ranked)
    return {
        "recall@10": recall(np.array(found), truth),
        "scan": percentiles(scan_ms),
        "code_ranking": percentiles(ranked),
        "exact_read": percentiles(read),
        "exact_read_warm": percentiles(warm),
        "total": percentiles((before + read).tolist()),
        "total_warm": percentiles((before + warm).tolist()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, required=True, help="the gallery bench_index.py stored")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bench")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--nprobe", default="256,512")
    parser.add_argument("--candidates", default="800,1600,3200")
    parser.add_argument("--codes", default="0,64,128", help="bytes per face of the second code; 0: none")
    parser.add_argument("--exact", default="100,200", help="candidates scored with their float vectors")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_refine")
    args = parser.parse_args(argv)
    sweeps = ("nprobe", "candidates", "codes", "exact")
    grid = {name: [int(v) for v in getattr(args, name).split(",")] for name in sweeps}
    faiss.omp_set_num_threads(1)
    data = args.data / f"n{args.size}"
    stored = Stored(data, args.size)
    served, path = served_index(data, stored)
    truth_file = min((p for p in data.glob("truth-*.npy") if int(p.stem[6:]) >= args.queries), default=None)
    if truth_file is None:
        raise SystemExit(f"no exact top 10 for {args.queries} queries in {data}")
    queries = np.load(data / "queries.npy").astype(np.float32)[: args.queries]
    truth = np.load(truth_file)[: args.queries]

    scans = {(p, r): scan(served, queries, p, r) for p in grid["nprobe"] for r in grid["candidates"]}
    needed = sorted({i for found, _ in scans.values() for mine in found for i in mine})
    training = stored.sample(TRAINING)
    coders = {m: Codes(m, training) for m in grid["codes"] if m}
    for start in range(0, len(needed), 50_000):
        ids = needed[start : start + 50_000]
        vectors = stored.vectors(ids)
        for coder in coders.values():
            coder.encode(ids, vectors)

    base_bytes = path.stat().st_size + served.packed_bytes
    rows = []
    for (nprobe, count), scanned in scans.items():
        for m in [0, *coders]:
            for keep in grid["exact"]:
                row = {"nprobe": nprobe, "candidates": count, "code_bytes": m, "exact": keep}
                row |= answer(stored, queries, truth, scanned, coders.get(m), keep)
                row["index_bytes_estimate"] = base_bytes + args.size * (m + 8 if m else 0)
                rows.append(row)
                print(line(row), flush=True)
    report = {"size": args.size, "index_file": path.name, "lists": served.state.nlist, "queries": args.queries,
              "cores": os.cpu_count(), "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    reached = [r for r in rows if r["recall@10"] >= 0.99]
    if reached:
        fastest = min(reached, key=lambda r: r["total"]["p50_ms"])
        print(f"{args.size} faces: fastest at recall@10 >= 0.99: {line(fastest)}")
    else:
        print(f"{args.size} faces: no setting reached 0.99; best {line(max(rows, key=lambda r: r['recall@10']))}")
    return 0


def line(row: dict) -> str:
    code = f"PQ{row['code_bytes']}x8" if row["code_bytes"] else "no second code"
    return (
        f"nprobe {row['nprobe']}, {row['candidates']} candidates, {code}, {row['exact']} exact: "
        f"recall@10 {row['recall@10']}, p50 {row['total']['p50_ms']} ms (scan {row['scan']['p50_ms']}, "
        f"codes {row['code_ranking']['p50_ms']}, exact {row['exact_read']['p50_ms']}), "
        f"p99 {row['total']['p99_ms']} ms; "
        f"catalog warm p50 {row['total_warm']['p50_ms']} ms, p99 {row['total_warm']['p99_ms']} ms; "
        f"index ~{row['index_bytes_estimate'] / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    raise SystemExit(main())
