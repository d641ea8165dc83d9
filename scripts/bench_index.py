"""Benchmark the gallery index: IVF against exact search, memory, rebuild under load.

  python scripts/bench_index.py [--sizes 10000,100000,1000000] [--nprobes 1,2,4,8,16,32,64]
                                [--rebuild-size N] [--threads 2] [--out reports/bench_index]

Gallery vectors are synthetic but shaped like faces: many identities of a few faces
each, every face at cosine 0.6-0.8 from its identity's centre, unit-normalised, in the
pack's dimension (512). Queries are unseen faces of enrolled identities. For each size
it prints build time, memory per vector (resident memory of the index loaded from its
file, against the 2048 raw bytes of a 512-d float32 vector), single-query p50/p99 and
per-query time in batches of 100, recall@1 and recall@10 against exact search, and the
exact search's own latency in the same run. Then, on a real data directory of
``--rebuild-size`` faces, it runs ``scripts/rebuild_index.py`` in another process while
this one keeps searching through ``FaissIndexes`` as the server does, and reports the
rebuild time and the search latency during the rebuild against before it.

Writes ``<out>.json`` and ``<out>.png`` (recall@10 against p50 latency per nprobe).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from index.catalog import Catalog
from index.faiss import FaissIndexes
from index.faiss.files import IndexFiles
from index.faiss.vector_index import VectorIndex
from index.lmdb import LmdbCatalog
from index.records import NewFace, NewImage
from index.vectors import IndexSettings

ROOT = Path(__file__).resolve().parents[1]
DIM = 512
FACES_PER_IDENTITY = 5
GROUP = 20  # identities per lookalike group
LATENT = 32  # dimensions the group centres vary along
SINGLE_QUERIES = 200
BATCH = 100


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def around(centres: np.ndarray, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at a cosine drawn from [low, high] to their row of ``centres``."""
    tangent = np.sqrt(1 / rng.uniform(low, high, size=(len(centres), 1)) ** 2 - 1).astype(np.float32)
    return unit(centres + tangent * unit(rng.standard_normal(centres.shape, dtype=np.float32)))


def gallery(size: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gallery vectors, query vectors) for ``size`` faces of size/5 identities.

    Shaped as real embeddings are, in three levels. Lookalike groups of 20 identities
    have centres spread over a 32-dimensional subspace (population traits: age, sex,
    ancestry vary along few directions); an identity's centre is at cosine 0.65-0.75
    to its group's, so a person's nearest strangers are far closer than random vectors
    (about 0.3, near what buffalo_s gives strangers at a false-accept rate of 1e-4).
    Faces lie at cosine 0.6-0.8 to their identity's centre; queries are unseen faces
    of enrolled identities.
    """
    rng = np.random.default_rng(seed)
    count = max(1, size // FACES_PER_IDENTITY)
    basis = np.linalg.qr(rng.standard_normal((DIM, LATENT)))[0].T.astype(np.float32)
    groups = unit(rng.standard_normal((max(1, count // GROUP), LATENT), dtype=np.float32) @ basis)
    centres = around(groups[np.arange(count) % len(groups)], 0.65, 0.75, rng)
    vectors = np.empty((size, DIM), dtype=np.float32)
    for start in range(0, size, 100_000):
        rows = np.arange(start, min(size, start + 100_000))
        vectors[rows] = around(centres[rows % count], 0.6, 0.8, rng)
    return vectors, around(centres[rng.integers(0, count, queries)], 0.6, 0.8, rng)


def latencies(search, queries: np.ndarray) -> dict:
    """p50/p99 of single queries (ms) and per-query time in batches (ms)."""
    singles = []
    for query in queries[:SINGLE_QUERIES]:
        started = time.perf_counter()
        search(query[None, :])
        singles.append(time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, len(queries), BATCH):
        search(queries[start : start + BATCH])
    batched = (time.perf_counter() - started) / len(queries)
    return {
        "p50_ms": round(float(np.percentile(singles, 50)) * 1e3, 3),
        "p99_ms": round(float(np.percentile(singles, 99)) * 1e3, 3),
        "batch_ms_per_query": round(batched * 1e3, 4),
    }


def recall(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    at1 = float(np.mean(found[:, 0] == truth[:, 0]))
    at10 = float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))
    return round(at1, 4), round(at10, 4)


_MEASURE = """
import gc, os, sys
from pathlib import Path
from index.faiss.vector_index import VectorIndex
def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
import faiss
gc.collect()
before = rss()
index = VectorIndex.load(Path(sys.argv[1]))
print(rss() - before, index.count)
"""


def memory_per_vector(index: VectorIndex, folder: Path) -> tuple[float, float]:
    """(resident bytes, file bytes) per vector of the index as a server loads it from its
    file, measured in a fresh process so no freed memory of this one is reused."""
    path = folder / "bench.faiss"
    index.save(path)
    size = path.stat().st_size
    answer = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True)
    grown, count = (int(value) for value in answer.stdout.split())
    path.unlink()
    return round(grown / count, 1), round(size / count, 1)


def bench_size(size: int, nprobes: list[int], storages: list[str], queries: int, threads: int, folder: Path) -> dict:
    print(f"\n== {size} vectors", flush=True)
    vectors, probes = gallery(size, queries)
    ids = np.arange(size, dtype=np.int64)
    faiss.omp_set_num_threads(threads)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    truth = exact.search(probes, 10)[1]
    result = {"size": size, "exact": latencies(lambda q: exact.search(q, 10), probes), "ivf": []}
    exact.reset()  # its 2 GB are not needed while the IVFs are measured
    for storage in storages:
        settings = IndexSettings(ivf_threshold=0, storage=storage)
        faiss.omp_set_num_threads(os.cpu_count())
        started = time.perf_counter()
        index = VectorIndex.build(DIM, ids, vectors, settings)
        built = time.perf_counter() - started
        faiss.omp_set_num_threads(threads)
        resident, stored = memory_per_vector(index, folder)
        row = {
            "storage": storage,
            "lists": index.state.nlist,
            "build_s": round(built, 1),
            "bytes_per_vector": resident,
            "file_bytes_per_vector": stored,
            "raw_ratio": round(resident / (DIM * 4), 3),
            "nprobe": [],
        }
        for nprobe in nprobes:
            index.set_nprobe(nprobe)
            found = index.search(probes, 10)[1]
            at1, at10 = recall(found, truth)
            timing = latencies(lambda q, index=index: index.search(q, 10), probes)
            row["nprobe"].append({"nprobe": nprobe, "recall@1": at1, "recall@10": at10, **timing})
        result["ivf"].append(row)
        del index
        gc.collect()
    return result


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'size':>8} {'index':<9} {'lists':>5} {'build s':>7} {'B/vec':>7} {'xraw':>5} {'nprobe':>6} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'batch ms':>8} {'R@1':>6} {'R@10':>6} {'speedup':>7}"
    )
    for result in results:
        exact = result["exact"]
        print(
            f"{result['size']:>8} {'exact':<9} {'':>5} {'':>7} {DIM * 4:>7} {1.0:>5.2f} {'':>6} "
            f"{exact['p50_ms']:>8.3f} {exact['p99_ms']:>8.3f} {exact['batch_ms_per_query']:>8.4f} "
            f"{1.0:>6.3f} {1.0:>6.3f} {1.0:>7.1f}"
        )
        for row in result["ivf"]:
            for point in row["nprobe"]:
                print(
                    f"{result['size']:>8} {'ivf-' + row['storage']:<9} {row['lists']:>5} {row['build_s']:>7.1f} "
                    f"{row['bytes_per_vector']:>7.0f} {row['raw_ratio']:>5.2f} {point['nprobe']:>6} "
                    f"{point['p50_ms']:>8.3f} {point['p99_ms']:>8.3f} {point['batch_ms_per_query']:>8.4f} "
                    f"{point['recall@1']:>6.3f} {point['recall@10']:>6.3f} {exact['p50_ms'] / point['p50_ms']:>7.1f}"
                )


def choose_nprobe(results: list[dict], target: float = 0.99) -> int | None:
    """The smallest nprobe reaching ``target`` recall@10 with flat storage at every size."""
    rows = [row for result in results for row in result["ivf"] if row["storage"] == "flat"]
    candidates = sorted({point["nprobe"] for row in rows for point in row["nprobe"]})
    for nprobe in candidates:
        if all(p["recall@10"] >= target for row in rows for p in row["nprobe"] if p["nprobe"] == nprobe):
            return nprobe
    return None


def fill_store(catalog: Catalog, gid: int, vectors: np.ndarray, per_image: int = 1000) -> None:
    for start in range(0, len(vectors), per_image):
        faces = [NewFace([0, 0, 1, 1], 1.0, vector) for vector in vectors[start : start + per_image]]
        catalog.images.add(gid, NewImage("bench", "image/png", {}, "bench", "buffalo_s", faces))


def search_for(indexes: FaissIndexes, gid: int, probes: np.ndarray, seconds: float | None, until=None) -> list:
    """Single-query latencies through FaissIndexes (catch-up included) for ``seconds`` or
    while ``until()`` holds."""
    times = []
    started = time.monotonic()
    position = 0
    while (until() if until else time.monotonic() - started < seconds) or len(times) < 20:
        query = probes[position % len(probes)][None, :]
        position += 1
        began = time.perf_counter()
        indexes.search(gid, query, 10)
        times.append(time.perf_counter() - began)
    return times


def bench_rebuild(size: int, nprobe: int, folder: Path) -> dict:
    """A rebuild by the script in another process while this one searches as a server does."""
    print(f"\n== rebuild of {size} vectors while searching", flush=True)
    vectors, probes = gallery(size, 1000, seed=1)
    data = folder / "data"
    catalog = LmdbCatalog(data / "lmdb", 8 << 30)
    gid = catalog.keys.create("bench", "unused", None, "bench").gallery
    started = time.perf_counter()
    fill_store(catalog, gid, vectors)
    filled = time.perf_counter() - started
    settings = IndexSettings(ivf_threshold=min(50_000, size), nprobe=nprobe, save_seconds=0)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count())
    index = VectorIndex.build(DIM, np.arange(1, size + 1, dtype=np.int64), vectors, settings)
    faiss.omp_set_num_threads(threads)
    del vectors
    index.state.seq = catalog.images.gallery(gid).seq
    index.save(IndexFiles(data / "indexes").path(gid, 0))  # the server's checkpoint: no build at start
    del index
    gc.collect()
    indexes = FaissIndexes(catalog, data / "indexes", settings, serving=True)
    indexes.open_all()
    before = search_for(indexes, gid, probes, 20.0)
    env = {
        **os.environ,
        "FACE_SEARCH_DATA_DIR": str(data),
        "FACE_SEARCH_IVF_THRESHOLD": str(settings.ivf_threshold),
        "FACE_SEARCH_NPROBE": str(nprobe),
    }
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "scripts/rebuild_index.py", "--key", "bench"], cwd=ROOT, env=env)
    during = search_for(indexes, gid, probes, None, until=lambda: child.poll() is None)
    rebuilt = time.perf_counter() - started
    adopting = search_for(
        indexes, gid, probes, None, until=lambda: child.returncode == 0 and indexes.status(gid).generation == 0
    )
    indexes.wait(gid)
    adopted = time.perf_counter() - started
    after = search_for(indexes, gid, probes, 10.0)
    state = indexes.status(gid)
    indexes.close()
    catalog.close()

    def stats(times: list) -> dict:
        return {
            "searches": len(times),
            "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
        }

    result = {
        "size": size,
        "rebuild_exit": child.returncode,
        "lmdb_fill_s": round(filled, 1),
        "rebuild_s": round(rebuilt, 1),
        "adopted_after_s": round(adopted, 1),
        "generation": state.generation,
        "lists": state.details.lists if state.details else 0,
        "before": stats(before),
        "during_rebuild": stats(during),
        "during_adoption": stats(adopting),
        "after": stats(after),
    }
    result["p99_ratio"] = round(result["during_rebuild"]["p99_ms"] / result["before"]["p99_ms"], 2)
    print(json.dumps(result, indent=1), flush=True)
    return result


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for result in results:
        for row in result["ivf"]:
            points = row["nprobe"]
            axes.plot(
                [p["p50_ms"] for p in points],
                [p["recall@10"] for p in points],
                marker="o",
                label=f"{result['size']:,} ivf-{row['storage']}",
            )
            for p in points:
                axes.annotate(str(p["nprobe"]), (p["p50_ms"], p["recall@10"]), fontsize=7)
        axes.axvline(result["exact"]["p50_ms"], linestyle=":", color="grey")
    axes.axhline(0.99, linestyle="--", color="red", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlabel("single-query p50 latency (ms, log); dotted: exact search")
    axes.set_ylabel("recall@10 against exact search")
    axes.set_title("IVF recall against latency, labels = nprobe")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--nprobes", default="1,2,4,8,16,32,64")
    parser.add_argument("--storages", default="flat,sq8")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rebuild-size", type=int, help="default: the largest size; 0 skips it")
    parser.add_argument("--threads", type=int, default=1, help="FAISS (OpenMP) threads for searching")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_index")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    nprobes = [int(n) for n in args.nprobes.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"FAISS {faiss.__version__}: {os.cpu_count()} threads to build, {args.threads} to search")

    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        results = [
            bench_size(size, nprobes, args.storages.split(","), args.queries, args.threads, Path(tmp)) for size in sizes
        ]
        print_table(results)
        chosen = choose_nprobe(results)
        print(f"\nsmallest nprobe with recall@10 >= 0.99 (flat storage, every size): {chosen}")
        rebuild_size = max(sizes) if args.rebuild_size is None else args.rebuild_size
        rebuild = bench_rebuild(rebuild_size, chosen or 16, Path(tmp)) if rebuild_size else None

    report = {
        "faiss": faiss.__version__,
        "search_threads": args.threads,
        "rebuild_threads": IndexSettings().rebuild_threads,
        "cores": os.cpu_count(),
        "dim": DIM,
        "faces_per_identity": FACES_PER_IDENTITY,
        "chosen_nprobe": chosen,
        "sizes": results,
        "rebuild": rebuild,
    }
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
