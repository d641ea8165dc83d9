"""Benchmark cluster mode (PostgreSQL + Milvus) against the embedded backend, in one run.

  python scripts/bench_cluster.py [--size 1000000] [--queries 200] [--seconds 30] [--out reports/bench_cluster]
  python scripts/bench_cluster.py --filters [--size 1000000] [--queries 200] [--out reports/bench_cluster]
  options: --pack buffalo_s_edgeface (faces shaped like its vectors; default buffalo_s, as bench_index)

Starts its own PostgreSQL and Milvus from their PyPI packages on loopback, under a temporary
folder, and loads ``--size`` synthetic faces (service/harness/galleries.py: identities in
lookalike groups, as scripts/bench_index.py makes them) into one gallery, stored as the pack
stores them. Default mode reports:

- the insert rate through the outbox: catalog rows committed to PostgreSQL, then applied to
  Milvus by the applier the replicas run, and the time Milvus takes to index them;
- search p50/p99 of the vector step alone (``VectorIndexes.search``, catch-up check
  included) and of Milvus alone, and recall@10 against exact search over the faces as generated;
- a whole ``POST /search`` (decode, detect, embed, search, catalog) through a real replica;
- resident memory of each component (PostgreSQL's processes, Milvus, the replica);
- ``POST /search`` throughput of one replica and of two (4 clients), and their ratio;
- the same latencies, recall and memory for the embedded backend (LMDB + FAISS IVF).

``--filters`` stores the faces as photos with metadata, collections and creation times
(``galleries.Photos``: each filter of ``galleries.FILTERS`` keeps a known share, 50% to 0.01%)
and measures, for each filter, the filtered ``VectorIndexes.search`` as a replica runs it:
recall@10 against exact search over the faces the filter keeps, p50/p99 beside the unfiltered
search's on the same gallery (the embedded side of the same table: bench_index.py --filters).

Writes ``<out>.json`` (``<out>-filters.json`` with ``--filters``) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from face_search_client import FaceSearchClient
from index.catalog import Catalog
from index.errors import StorageUnavailableError
from index.faiss import FaissIndexes
from index.lmdb import LmdbCatalog
from index.milvus import MilvusIndexes
from index.postgres import PostgresCatalog
from index.vectors import IndexSettings, VectorIndexes
from models.packs import ModelPack, load_pack
from service.core.config import Limits
from service.core.filters import scope_of
from service.harness.engines import Milvus, Postgres, running
from service.harness.galleries import (
    FILTERS,
    INDEXED_KEYS,
    UNINDEXED_QUERIES,
    Faces,
    Photos,
    fill,
    fill_photos,
    filtered_truth,
    generated_truth,
    percentiles,
    recall_of,
)
from service.harness.live import ROOT, LiveServer
from service.harness.photos import package_photo

KEY, SECRET = "bench", "bench-secret"
STRONG_WINDOW_S = 12  # past the window after a write in which searches run at Strong consistency


def rss(pids: list[int]) -> int:
    """Resident bytes of these processes together."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return total


def resident_mb(pid: int | None, children: bool = True) -> int:
    """Resident MiB of a server's process, with its children (a master's workers, PostgreSQL's
    backends) unless told not to."""
    if pid is None:
        return 0
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if children else []
    except OSError:
        found = []
    return rss([pid, *(int(child) for child in found)]) >> 20


def searched(
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], queries: np.ndarray
) -> tuple[list[float], list[list[int]]]:
    """Milliseconds of each single-query search, and the face ids each found."""
    times, found = [], []
    for query in queries:
        started = time.perf_counter()
        ids = search(query[None, :])[1][0]
        times.append((time.perf_counter() - started) * 1000)
        found.append([int(i) for i in ids])
    return times, found


def vector_step(indexes: VectorIndexes, gid: int, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Latencies and recall@10 of ``VectorIndexes.search``."""
    times, found = searched(lambda query: indexes.search(gid, query, 10), queries)
    return {**percentiles(times), "recall@10": recall_of(found, truth)}


def into_milvus(
    catalog: PostgresCatalog, milvus: Milvus, gid: int, pack: ModelPack, dim: int, settings: IndexSettings
) -> tuple[MilvusIndexes, dict]:
    """Apply the gallery's outbox to Milvus, as the replicas' background applier does, and wait
    for Milvus to index it; the rates and times."""
    indexes = MilvusIndexes(catalog, milvus.uri, settings)
    started = time.monotonic()
    while True:  # a busy Milvus is retried, as by the applier
        try:
            indexes.applier.apply(gid)
            break
        except StorageUnavailableError as exc:
            print(f"applying: {exc}; retrying", flush=True)
            time.sleep(2)
    applied = time.monotonic() - started
    collection = indexes.collection(pack.name, dim)
    started = time.monotonic()
    collection.compact(3600)
    while collection.index_state().get("pending_index_rows", 0):
        time.sleep(5)
    indexed = time.monotonic() - started
    time.sleep(STRONG_WINDOW_S)
    return indexes, {"outbox_apply_s": round(applied, 1), "index_build_s": round(indexed, 1)}


def stored(catalog: Catalog, store: Callable[[int], None]) -> tuple[int, float]:
    """A new key's gallery filled by ``store``, and the seconds it took."""
    gid = catalog.keys.create(KEY, "unused", None, "bench").gallery
    started = time.monotonic()
    store(gid)
    return gid, time.monotonic() - started


def whole_search(server: LiveServer, count: int) -> dict:
    client, photo = server.client(KEY, SECRET), package_photo("Tom_Hanks_54745.png")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client.search(photo, top_k=10)  # a refusal raises
        times.append((time.perf_counter() - started) * 1000)
    return percentiles(times)


def throughput(servers: list[LiveServer], seconds: float, clients: int = 4) -> float:
    """POST /search answered per second by ``clients`` clients spread over the servers."""
    photo = package_photo("Tom_Hanks_54745.png")
    done = [0] * clients
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        client: FaceSearchClient = servers[n % len(servers)].client(KEY, SECRET)  # a kept-alive session each
        while time.monotonic() < stop:
            client.search(photo, top_k=10)
            done[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(sum(done) / seconds, 2)


def replica_env(postgres: Postgres, milvus: Milvus, root: Path) -> dict[str, str]:
    return {
        "FACE_SEARCH_CATALOG_URL": postgres.url,
        "FACE_SEARCH_MILVUS_URI": milvus.uri,
        "FACE_SEARCH_PHOTO_DIR": str(root / "photos"),
        "FACE_SEARCH_API_KEY": KEY,
        "FACE_SEARCH_API_SECRET": SECRET,
        "FACE_SEARCH_RATE_LIMIT": "0",
    }


def bench_cluster(root: Path, faces: Faces, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> dict:
    with running(root) as (postgres, milvus):
        catalog = PostgresCatalog(postgres.url)
        gid, committed = stored(catalog, lambda gid: fill(catalog, gid, faces, f"{faces.size:,} faces", args.pack))
        indexes, into = into_milvus(catalog, milvus, gid, args.pack, faces.dim, IndexSettings())
        collection = indexes.collection(args.pack.name, faces.dim)
        result = {
            "commit_rows_per_s": round(faces.size / committed),
            "outbox_apply_rows_per_s": round(faces.size / into["outbox_apply_s"]),
            "index_build_s": into["index_build_s"],
            "vector_step": vector_step(indexes, gid, queries, truth),
            "milvus_alone": percentiles(searched(lambda q: collection.search(gid, q, 10, strong=False), queries)[0]),
        }
        print(f"cluster vector step: {result['vector_step']}", flush=True)
        indexes.close()
        catalog.close()
        env = replica_env(postgres, milvus, root)
        servers = [LiveServer(root / f"replica-{n}", env, log=root / f"replica-{n}.log") for n in (0, 1)]
        try:
            for server in servers:
                server.start(timeout=300)
            result["whole_search"] = whole_search(servers[0], args.queries)
            one = throughput(servers[:1], args.seconds)
            two = throughput(servers, args.seconds)
            result["throughput"] = {"one_replica_per_s": one, "two_replicas_per_s": two, "ratio": round(two / one, 2)}
            result["memory_mb"] = {
                "postgres": resident_mb(postgres.pid),
                "milvus": resident_mb(milvus.pid, children=False),
                "replica": resident_mb(servers[0].pid),
            }
        finally:
            for server in servers:
                server.stop()
        return result


def bench_embedded(root: Path, faces: Faces, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace) -> dict:
    catalog = LmdbCatalog(root / "data" / "lmdb")
    gid, committed = stored(catalog, lambda gid: fill(catalog, gid, faces, f"{faces.size:,} faces", args.pack))
    before = rss([os.getpid()])
    started = time.monotonic()
    indexes = FaissIndexes(catalog, root / "data" / "indexes", IndexSettings(save_seconds=0), serving=False)
    indexes.rebuild(gid, progress=lambda line: None)
    built = time.monotonic() - started
    indexes.search(gid, queries[:1], 10)
    result = {
        "commit_rows_per_s": round(faces.size / committed),
        "index_build_s": round(built, 1),
        "vector_step": vector_step(indexes, gid, queries, truth),
        "index_memory_mb": (rss([os.getpid()]) - before) >> 20,
    }
    print(f"embedded vector step: {result['vector_step']}", flush=True)
    indexes.close()
    catalog.close()
    env = {"FACE_SEARCH_API_KEY": KEY, "FACE_SEARCH_API_SECRET": SECRET, "FACE_SEARCH_RATE_LIMIT": "0"}
    server = LiveServer(root / "data", env, log=root / "server.log").start(timeout=900)
    try:
        result["whole_search"] = whole_search(server, args.queries)
        result["throughput_one_process_per_s"] = throughput([server], args.seconds)
        result["memory_mb"] = {"server": resident_mb(server.pid)}
    finally:
        server.stop()
    return result


def bench_filters(root: Path, args: argparse.Namespace) -> dict:
    """Filters mode (see the module): one gallery of photos with metadata, searched with each filter."""
    photos = Photos(Faces(args.size, args.size, args.pack), seed=args.size)
    queries = photos.population.queries(args.queries)
    exact = filtered_truth(photos, queries, root / "filtered-truth.npz")
    with running(root) as (postgres, milvus):
        catalog = PostgresCatalog(postgres.url)
        label = f"{args.size:,} faces in photos"
        gid, committed = stored(catalog, lambda gid: fill_photos(catalog, gid, photos, label, args.pack))
        typed = IndexSettings(filter_keys=INDEXED_KEYS)  # as FACE_SEARCH_FILTER_KEYS sets them
        indexes, into = into_milvus(catalog, milvus, gid, args.pack, photos.population.dim, typed)
        unfiltered, _ = searched(lambda q: indexes.search(gid, q, 10), queries)
        rows = {}
        for name, fields in FILTERS.items():
            scope = scope_of(fields, Limits())
            kept = catalog.images.select(gid, scope).count
            rows_of = queries[:UNINDEXED_QUERIES] if "not indexed" in name else queries
            times, found = searched(partial(indexes.search, gid, k=10, scope=scope), rows_of)
            rows[name] = {
                "faces": kept,
                "share": round(kept / args.size, 6),
                **percentiles(times),
                "recall@10": recall_of(found, exact[name]),
            }
            print(f"{name}: {rows[name]}", flush=True)
        memory = {"postgres": resident_mb(postgres.pid), "milvus": resident_mb(milvus.pid, children=False)}
        indexes.close()
        catalog.close()
    return {
        "size": args.size,
        "photos": photos.count,
        "pack": args.pack.name,
        "queries": args.queries,
        "commit_photos_per_s": round(photos.count / committed),
        **into,
        "memory_mb": memory,
        "unfiltered": percentiles(unfiltered),
        "filters": rows,
    }


def filters_table(report: dict) -> str:
    u = report["unfiltered"]
    lines = [
        f"cluster mode (PostgreSQL + Milvus), {report['size']:,} faces in {report['photos']:,} photos "
        f"({report['pack']}); unfiltered p50 / p99 {u['p50_ms']} / {u['p99_ms']} ms",
        "",
        "| filter | faces kept | recall@10 | p50 / p99 ms | p99 / unfiltered p99 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, f in report["filters"].items():
        lines.append(
            f"| {name} | {f['faces']:,} ({100 * f['share']:.2f}%) | {f['recall@10']} "
            f"| {f['p50_ms']} / {f['p99_ms']} | {f['p99_ms'] / u['p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each throughput run")
    parser.add_argument("--pack", default="buffalo_s", help="faces shaped like this pack's, stored as it stores them")
    parser.add_argument("--filters", action="store_true", help="filtered search: photos with metadata (FILTERS)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_cluster")
    args = parser.parse_args(argv)
    args.pack = load_pack(args.pack, check=False)  # its manifest: dims and stored type, no model is run
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        root = Path(folder)
        root.chmod(0o755)  # PostgreSQL runs as nobody when this runs as root
        if args.filters:
            results = bench_filters(root, args)
            out = args.out.with_name(args.out.name + "-filters.json")
        else:
            faces = Faces(args.size, args.size, args.pack)
            queries = faces.queries(args.queries)
            truth = generated_truth(faces, queries)
            results = {"size": args.size, "pack": args.pack.name, "queries": args.queries}
            results["cluster"] = bench_cluster(root / "cluster", faces, queries, truth, args)
            results["embedded"] = bench_embedded(root / "embedded", faces, queries, truth, args)
            out = args.out.with_suffix(".json")
    results["seconds"] = round(time.monotonic() - started)
    results["cores"] = os.cpu_count()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(filters_table(results) if args.filters else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
