"""Benchmark grouping faces into persons on a large gallery of synthetic lookalike faces.

  nice -n 10 python scripts/bench_persons.py --sizes 100000,1000000 --data /work/bench-persons

The faces are ``scripts/bench_index.py``'s (identities of five faces in lookalike groups of
twenty, made a chunk at a time from a seed), stored ten to a photo, each photo's faces drawn
at random from the whole chunk; the index is rebuilt as a nightly job would. Then, per size:

- a serving process (one search thread, as a server's request thread) answers single queries,
  a few milliseconds apart, before the run (p50 / p99) and while a full grouping run goes on
  beside it in another process (``scripts/persons.py group --full``, which lowers its own CPU
  priority as a server's job does): the run's wall time and peak memory, and the searches'
  p50 / p99 during it;
- how well the run grouped the faces (BCubed against the synthetic identities, and persons
  mixing identities);
- after the run, the time an add spends choosing the persons of its faces (the neighbours of
  each new face and their persons): p50 / p99 for a photo of one face and of ten.

Data stay in ``--data`` between runs (a size already stored and indexed is reused; its
persons are cleared first). Writes ``<out>.json`` and prints a table and the command.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index.lmdb import LmdbCatalog
from index.records import NewFace, NewImage
from service.core.config import Settings
from service.harness.galleries import CHUNK, PER_IDENTITY, Population, rebuild
from service.harness.scoring import bcubed

ROOT = Path(__file__).resolve().parents[1]

PER_PHOTO = 10
MAP_BYTES = 64 << 30
PAUSE_SECONDS = 0.005  # between two searches of the serving process: a busy server, not a saturated one


def fill(catalog: LmdbCatalog, gid: int, population: Population) -> None:
    """The population's faces, ten to a photo, a chunk at a time; each photo's metadata names
    its faces' places in the population."""
    have = catalog.images.gallery(gid).faces
    if have == population.size:
        return
    if have:
        raise SystemExit(f"{have} of {population.size} faces are stored: remove the data folder and start again")
    with tqdm(total=population.size, unit="face", desc=f"storing {population.size:,} faces") as bar:
        for number in range(-(-population.size // CHUNK)):
            vectors = population.chunk(number)
            order = np.random.default_rng([population.seed, 9, number]).permutation(len(vectors))
            for photo in np.array_split(order, -(-len(order) // PER_PHOTO)):
                places = (number * CHUNK + photo).tolist()
                faces = [NewFace([0.0, 0.0, 100.0, 100.0], 0.9, vectors[i]) for i in photo]
                catalog.images.add(
                    gid, NewImage("bench.jpg", "image/jpeg", {"faces": places}, "bench", "buffalo_s", faces)
                )
                bar.update(len(photo))


def identities(catalog: LmdbCatalog, gid: int) -> dict[int, int]:
    """Face id to its synthetic identity."""
    found: dict[int, int] = {}
    ids = catalog.images.ids(gid)
    for start in range(0, len(ids), 1000):
        for record in catalog.images.get_many(gid, ids[start : start + 1000]).values():
            for face, place in zip(record.faces, record.metadata["faces"], strict=True):
                found[face.id] = place // PER_IDENTITY
    return found


def clear_persons(data: Path) -> None:
    """A size measured before: its persons go (every assignment, every person), for a fresh run."""
    import lmdb

    env = lmdb.open(str(data / "lmdb"), map_size=MAP_BYTES, max_dbs=32)
    with env.begin(write=True) as txn:
        for name in ("persons", "person_order", "person_images", "face_persons", "person_state", "jobs"):
            txn.drop(env.open_db(name.encode(), txn=txn), delete=False)
    env.close()


def serve(data: str, gid: int, queries: np.ndarray, photos: np.ndarray, conn: Connection) -> None:
    """A serving process: searches before and during the run, then the add's attach cost."""
    import faiss

    from index.faiss import FaissIndexes
    from models.packs import load_pack
    from service.core.group_run import Attacher
    from service.core.threshold import link_threshold

    faiss.omp_set_num_threads(1)
    settings = Settings.from_env().at(Path(data))
    catalog = LmdbCatalog(Path(data) / "lmdb", MAP_BYTES)
    indexes = FaissIndexes(catalog, Path(data) / "indexes", settings.index, serving=True)
    indexes.open_all()

    def timed(row: np.ndarray) -> float:
        started = time.perf_counter()
        indexes.search(gid, row[None, :], 10)
        return (time.perf_counter() - started) * 1000

    for row in queries[:100]:
        timed(row)
    before = []
    for row in queries:
        before.append(timed(row))
        time.sleep(PAUSE_SECONDS)
    conn.send("ready")
    during, n = [], 0
    while not conn.poll():
        during.append(timed(queries[n % len(queries)]))
        n += 1
        time.sleep(PAUSE_SECONDS)
    conn.recv()
    grouping = settings.grouping
    attacher = Attacher(
        catalog.persons, indexes, link_threshold(load_pack(settings.models), grouping.far, None), grouping
    )
    attach: dict[str, list[float]] = {"one_face": [], "ten_faces": []}
    for name, size in (("one_face", 1), ("ten_faces", PER_PHOTO)):
        for start in range(0, len(photos) - size + 1, size):
            faces = list(photos[start : start + size])
            started = time.perf_counter()
            chosen = attacher.persons_of(gid, faces)
            attach[name].append((time.perf_counter() - started) * 1000)
            attach.setdefault(f"{name}_attached", []).append(sum(person is not None for person in chosen))
    indexes.close()
    catalog.close()
    conn.send({"before": before, "during": during, "attach": attach})


def percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2),
            "count": len(times)}  # fmt: skip


def one_size(size: int, args: argparse.Namespace) -> dict:
    data = args.data / f"n{size}"
    key = f"persons-{size}"
    catalog = LmdbCatalog(data / "lmdb", MAP_BYTES)
    record = catalog.keys.get(key) or catalog.keys.create(key, "unused", None, "bench")
    population = Population(size, seed=size)
    fill(catalog, record.gallery, population)
    truth = identities(catalog, record.gallery)
    catalog.close()
    built = rebuild(data, key) if not (data / "indexes").exists() else {"rebuild_s": None}
    clear_persons(data)
    queries = population.queries(args.queries)
    photos = population.queries(args.queries + 1000)[-1000:]  # other unseen faces of enrolled identities
    here, there = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(str(data), record.gallery, queries, photos, there)
    )
    server.start()
    here.recv()
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data), "FACE_SEARCH_LMDB_MAP_BYTES": str(MAP_BYTES)}
    command = [sys.executable, "scripts/persons.py", "group", "--key", key, "--full"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    here.send("stop")
    served = here.recv()
    server.join()
    if done.returncode:
        raise SystemExit(f"the run failed: {done.stderr[-3000:]}")
    job = json.loads(done.stdout.strip().splitlines()[-1])
    catalog = LmdbCatalog(data / "lmdb", MAP_BYTES)
    assignments = catalog.grouping.assignments(record.gallery)
    catalog.close()
    faces = sorted(truth)
    groups = np.array([assignments[f].person if f in assignments and assignments[f].person else -1 for f in faces])
    quality = bcubed(np.array([truth[f] for f in faces], object), groups)
    attach = served["attach"]
    return {
        "size": size,
        **built,
        "run_s": round(wall, 1),
        "run_peak_memory_bytes": job["peak_memory_bytes"],
        "job": job,
        "searches_before": percentiles(served["before"]),
        "searches_during": percentiles(served["during"]),
        "grouping": quality.__dict__,
        "attach_one_face": percentiles(attach["one_face"]),
        "attach_ten_faces": percentiles(attach["ten_faces"]),
        "attached_share": float(np.mean(attach["one_face_attached"])),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| faces | run min | run peak memory GiB | searches before p50 / p99 ms | during p50 / p99 ms | p99 ratio "
        "| BCubed P / R / F | persons (mixing) | add's attach, 1 face p50 / p99 ms | 10 faces p50 / p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        before, during, g = r["searches_before"], r["searches_during"], r["grouping"]
        lines.append(
            f"| {r['size']:,} | {r['run_s'] / 60:.1f} | {r['run_peak_memory_bytes'] / 2**30:.2f} "
            f"| {before['p50_ms']} / {before['p99_ms']} | {during['p50_ms']} / {during['p99_ms']} "
            f"| {during['p99_ms'] / before['p99_ms']:.2f} "
            f"| {g['precision']:.4f} / {g['recall']:.4f} / {g['f']:.4f} | {g['persons']:,} ({g['mixed']}) "
            f"| {r['attach_one_face']['p50_ms']} / {r['attach_one_face']['p99_ms']} "
            f"| {r['attach_ten_faces']['p50_ms']} / {r['attach_ten_faces']['p99_ms']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=2000, help="searches before the run")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bench-persons")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_persons")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sizes: list[dict] = []
    report = {"command": shlex.join([sys.executable, *sys.argv]), "cores": os.cpu_count(), "sizes": sizes}
    for size in (int(s) for s in args.sizes.split(",")):
        sizes.append(one_size(size, args))
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(table(sizes))
    print(f"command: {report['command']}; wrote {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
