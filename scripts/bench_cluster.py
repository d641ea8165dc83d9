"""Benchmark cluster mode (PostgreSQL + Milvus) against the embedded backend, in one run.

  python scripts/bench_cluster.py [--size 1000000] [--queries 200] [--seconds 30] [--out reports/bench_cluster.json]

Starts its own PostgreSQL and Milvus from their PyPI packages under a temporary folder,
loads ``--size`` synthetic face vectors (shaped like real ones: see scripts/bench_index.py)
into one gallery of each backend and reports:

- the insert rate through the outbox: catalog rows committed to PostgreSQL, then applied
  to Milvus by the applier the replicas run;
- search p50/p99 of the vector step alone (``VectorIndexes.search``, catch-up check
  included) and of Milvus alone, and recall@10 against exact search;
- a whole ``POST /search`` (decode, detect, embed, search, catalog) through a real replica;
- resident memory of each component (PostgreSQL's processes, Milvus, the replica);
- ``POST /search`` throughput of one replica and of two (4 clients), and their ratio;
- the same latencies, recall and memory for the embedded backend (LMDB + FAISS IVF).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_index import fill_store, gallery, latencies, recall

from index.errors import StorageUnavailableError
from index.faiss import FaissIndexes
from index.lmdb import LmdbCatalog
from index.milvus import MilvusIndexes
from index.postgres import PostgresCatalog
from index.vectors import IndexSettings
from service.harness.engines import Milvus, Postgres
from service.harness.live import LiveServer
from service.harness.photos import package_photo

ROOT = Path(__file__).resolve().parents[1]

KEY, SECRET = "bench", "bench-secret"


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


def family(pid: int) -> list[int]:
    """``pid`` and its children (a server's master and its workers or backends)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(child) for child in children)]


def exact(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    found = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 50):
        scores = queries[start : start + 50] @ vectors.T
        found[start : start + 50] = np.argsort(-scores, axis=1)[:, :k]
    return found


def vector_step(indexes, gid: int, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Latencies and recall of ``VectorIndexes.search``; a fresh catalog numbers the faces 1..n
    in the order they were added, so face id - 1 is the row of ``vectors``."""
    timing = latencies(lambda query: indexes.search(gid, query, 10), queries)
    found = np.stack([indexes.search(gid, query[None, :], 10)[1][0] - 1 for query in queries])
    at1, at10 = recall(found, truth)
    return {**timing, "recall@1": at1, "recall@10": at10}


def whole_search(server: LiveServer, count: int) -> dict:
    client, photo = server.client(KEY, SECRET), package_photo("Tom_Hanks_54745.png")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client.search(photo, top_k=10)  # a refusal raises
        times.append(time.perf_counter() - started)
    return {"p50_ms": round(np.percentile(times, 50) * 1e3, 1), "p99_ms": round(np.percentile(times, 99) * 1e3, 1)}


def throughput(servers: list[LiveServer], seconds: float, clients: int = 4) -> float:
    """POST /search answered per second by ``clients`` clients spread over the servers."""
    photo = package_photo("Tom_Hanks_54745.png")
    done = [0] * clients
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        client = servers[n % len(servers)].client(KEY, SECRET)  # one kept-alive session per client thread
        while time.monotonic() < stop:
            client.search(photo, top_k=10)
            done[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(sum(done) / seconds, 2)


def bench_cluster(root: Path, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, args) -> dict:
    postgres, milvus = Postgres(root / "postgres").start(), Milvus(root / "milvus").start()
    servers: list[LiveServer] = []
    try:
        catalog = PostgresCatalog(postgres.url)
        gid = catalog.keys.create(KEY, "unused", None, "bench").gallery
        started = time.monotonic()
        fill_store(catalog, gid, vectors)
        committed = time.monotonic() - started
        indexes = MilvusIndexes(catalog, milvus.uri, IndexSettings())
        started = time.monotonic()
        while True:  # as the replicas' background applier does: a busy Milvus is retried
            try:
                indexes.applier.apply(gid)
                break
            except StorageUnavailableError as exc:
                print(f"applying: {exc}; retrying", flush=True)
                time.sleep(2)
        applied = time.monotonic() - started
        print(
            f"cluster: {len(vectors)} faces committed in {committed:.0f}s, applied to Milvus in {applied:.0f}s",
            flush=True,
        )
        collection = indexes.collection("buffalo_s", vectors.shape[1])
        started = time.monotonic()
        collection.compact(3600)
        while collection.index_state().get("pending_index_rows", 0):
            time.sleep(5)
        indexed = time.monotonic() - started
        time.sleep(12)  # past the window in which searches run at Strong consistency
        result = {
            "commit_rows_per_s": round(len(vectors) / committed),
            "outbox_apply_rows_per_s": round(len(vectors) / applied),
            "index_build_s": round(indexed),
            "vector_step": vector_step(indexes, gid, queries, truth),
            "milvus_alone": latencies(lambda query: collection.search(gid, query, 10, strong=False), queries),
        }
        print(f"cluster vector step: {result['vector_step']}", flush=True)
        indexes.close()
        catalog.close()
        env = {
            "FACE_SEARCH_CATALOG_URL": postgres.url,
            "FACE_SEARCH_MILVUS_URI": milvus.uri,
            "FACE_SEARCH_PHOTO_DIR": str(root / "photos"),
            "FACE_SEARCH_API_KEY": KEY,
            "FACE_SEARCH_API_SECRET": SECRET,
            "FACE_SEARCH_RATE_LIMIT": "0",
        }
        servers = [LiveServer(root / f"replica-{n}", env).start(timeout=300) for n in (0, 1)]
        result["whole_search"] = whole_search(servers[0], args.queries)
        one = throughput(servers[:1], args.seconds)
        two = throughput(servers, args.seconds)
        result["throughput"] = {"one_replica_per_s": one, "two_replicas_per_s": two, "ratio": round(two / one, 2)}
        result["memory_mb"] = {
            "postgres": rss(family(postgres.pid)) >> 20,
            "milvus": rss([milvus.pid]) >> 20,
            "replica": rss(family(servers[0].pid)) >> 20,
        }
        return result
    finally:
        for server in servers:
            server.stop()
        milvus.kill()
        postgres.kill()


def bench_embedded(root: Path, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, args) -> dict:
    catalog = LmdbCatalog(root / "data" / "lmdb")
    gid = catalog.keys.create(KEY, "unused", None, "bench").gallery
    started = time.monotonic()
    fill_store(catalog, gid, vectors)
    committed = time.monotonic() - started
    before = rss([os.getpid()])
    started = time.monotonic()
    indexes = FaissIndexes(catalog, root / "data" / "indexes", IndexSettings(save_seconds=0), serving=False)
    indexes.rebuild(gid, progress=lambda line: None)
    built = time.monotonic() - started
    indexes.search(gid, queries[:1], 10)
    grown = rss([os.getpid()]) - before
    result = {
        "commit_rows_per_s": round(len(vectors) / committed),
        "index_build_s": round(built),
        "vector_step": vector_step(indexes, gid, queries, truth),
        "index_memory_mb": grown >> 20,
    }
    print(f"embedded vector step: {result['vector_step']}", flush=True)
    indexes.close()
    catalog.close()
    server = LiveServer(
        root / "data", {"FACE_SEARCH_API_KEY": KEY, "FACE_SEARCH_API_SECRET": SECRET, "FACE_SEARCH_RATE_LIMIT": "0"}
    )
    server.start(timeout=900)
    try:
        result["whole_search"] = whole_search(server, args.queries)
        result["throughput_one_process_per_s"] = throughput([server], args.seconds)
        result["memory_mb"] = {"server": rss(family(server.pid)) >> 20}
    finally:
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each throughput run")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_cluster.json")
    args = parser.parse_args(argv)
    vectors, queries = gallery(args.size, args.queries)
    truth = exact(vectors, queries)
    started = time.monotonic()
    results: dict = {"size": args.size, "queries": args.queries}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as folder:
        root = Path(folder)
        root.chmod(0o755)  # PostgreSQL runs as nobody when this runs as root
        results["cluster"] = bench_cluster(root / "cluster", vectors, queries, truth, args)
        results["embedded"] = bench_embedded(root / "embedded", vectors, queries, truth, args)
    results["seconds"] = round(time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
