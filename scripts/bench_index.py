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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index.faiss import FaissIndexes
from index.faiss.gallery import candidates_for
from index.lmdb import LmdbCatalog
from index.records import NewFace, NewImage
from models.packs import ModelPack, load_pack
from service.core.config import Settings
from service.harness.galleries import (
    CHUNK,
    FILTERS,
    PER_IMAGE,
    Faces,
    Photos,
    fill,
    fill_photos,
    filtered_truth,
    kept_best,
    nothing_yet,
    percentiles,
    rebuild,
    recall,
    recall_of,
)
from service.harness.index_serving import CACHES, INDEX_FILES, SIDES, Serving, measure
from service.harness.live import ROOT


def truth(
    catalog: LmdbCatalog, gid: int, queries: np.ndarray, cache: Path, population: Faces | None = None, k: int = 10
) -> np.ndarray:
    """The exact top-k face ids per query, over every stored vector, a batch at a time (cached); with
    ``population``, over the vectors as it generated them (float32) rather than as stored, the
    stored ones checked to be those, rounded."""
    if cache.is_file():
        return np.load(cache)
    best = nothing_yet(len(queries), k)
    with catalog.log.scan(gid, CHUNK) as (gallery, batches):
        for number, (ids, vectors) in enumerate(
            tqdm(batches, total=-(-gallery.faces // CHUNK), unit="batch", desc="exact search")
        ):
            if population is not None and number * CHUNK < population.size:  # faces a checkpoint test added: as stored
                made = population.chunk(number)
                if len(made) > len(vectors) or np.abs(made - vectors[: len(made)]).max() > 1e-3:
                    raise SystemExit(f"the stored faces of batch {number} are not those the seed makes")
                vectors = np.concatenate([made, vectors[len(made) :]])
            best = kept_best(best, queries @ vectors.T, ids, k)
    best_ids = best[1]
    np.save(cache, best_ids)
    return best_ids


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
    built = rebuild(data, key) if not (data / "indexes").exists() else {"rebuild_s": None}
    grid = {"nprobe": [256, 384, 512, 768], "candidates": [1600, 3200, 6400, 12800]} if args.grid else None
    rebuild_key = key if args.rebuild_while_serving else None
    served = measure(Serving(data, [record.gallery], queries, pack.name, pack.store_as, grid, True, rebuild_key))
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
        "candidates": candidates_for(
            size, population.dim, served["refine_bytes"], settings.index
        ),  # what the scan returns at this size
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
    built = rebuild(data, key) if not (data / "indexes").exists() else {"rebuild_s": None}
    served = measure(Serving(data, [record.gallery], queries, pack.name, pack.store_as, filters=FILTERS))
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
    served = measure(Serving(data, sample, queries, pack.name, pack.store_as))
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
