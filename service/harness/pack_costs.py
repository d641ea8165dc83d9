"""What a model pack costs on this machine: time per photo and per face, memory, bytes per stored face.

  python scripts/pack_costs.py [--pack buffalo_s,yunet_sface,buffalo_s_edgeface] [--photos 300] [--reembed]

Timings on a shared machine are noisy, so the packs are timed in turn within one run,
each warmed up first, over the same LFW photos (250x250), and each pack's best round
is kept: the ratio between packs is what to read. A photo is timed as an add embeds it
(every face) and as a search does (its largest face only); each embedder is timed per
aligned face on one thread, one face per run. Memory is measured in a fresh
process per pack, so one pack's allocations do not hide the other's: what the models
hold once loaded and run on a small and a large photo, and the peak (which includes
converting quantised weights at load), less the process before. Bytes per face: the
same photos added through the service's add use case to a fresh data directory per
pack, then the LMDB pages of the faces table and of the whole environment, and the
size of the saved FAISS index, divided by the faces. ``--reembed``: what moving a gallery of
those photos between packs costs per face, through ``service.core.reembed`` (buffalo_s to
buffalo_s_edgeface runs EdgeFace and the detector only; back, no model at all).
Also used by ``scripts/evaluate.py --costs``.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import json
import multiprocessing
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

from index.faiss import FaissIndexes
from index.lmdb import LmdbCatalog
from models.analyzer import FaceAnalyzer
from models.packs import load_pack
from service.core.config import Settings
from service.core.errors import ServiceError
from service.core.requests import AddImage, Photo
from service.core.services import build_services
from service.harness.photos import DATASETS

LFW = DATASETS / "lfw"
LARGE_PHOTO = DATASETS / "groups" / "images" / "dlib_bald_guys.jpg"
ROUNDS = 3
WARM_UP = 10
MB = 1 << 20


def lfw_photos(count: int, seed: int = 7) -> list[bytes]:
    with open(LFW / "manifest.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    random.Random(seed).shuffle(paths)
    return [(LFW / path).read_bytes() for path in paths[:count]]


def ms_per_photo(
    pack_names: list[str], photos: list[bytes], threads: int, limit: int | None = None
) -> dict[str, float]:
    """Whole pipeline (decode, detect, align, embed) per photo, each pack's best of ``ROUNDS`` rounds
    taken in turn; ``limit`` 1: as a search embeds its query (the largest face only)."""
    analyzers = {name: FaceAnalyzer(load_pack(name), threads) for name in pack_names}
    for analyzer in analyzers.values():
        for data in photos[:WARM_UP]:
            analyzer.faces_in_bytes(data, limit)
    best = dict.fromkeys(pack_names, float("inf"))
    for _ in range(ROUNDS):
        for name, analyzer in analyzers.items():
            started = time.perf_counter()
            for data in photos:
                analyzer.faces_in_bytes(data, limit)
            best[name] = min(best[name], (time.perf_counter() - started) * 1000 / len(photos))
    return best


def ms_per_face(pack_names: list[str], photos: list[bytes]) -> dict[str, dict[str, float]]:
    """Each embedder of each pack per aligned face, one thread, one face per run, best of ``ROUNDS``."""
    analyzers = {name: FaceAnalyzer(load_pack(name), 1) for name in pack_names}
    result: dict[str, dict[str, float]] = {}
    for name, analyzer in analyzers.items():
        crops = [analyzer.embedder.align(*frame) for frame in _aligned_frames(analyzer, photos)]
        result[name] = {}
        for weights, model in zip(analyzer.pack.embedders, analyzer.embedder.models, strict=True):
            for crop in crops[:WARM_UP]:
                model.embed([crop])
            rounds = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for crop in crops:
                    model.embed([crop])
                rounds.append((time.perf_counter() - started) * 1000 / len(crops))
            result[name][weights.path.stem] = min(rounds)
    return result


def _aligned_frames(analyzer: FaceAnalyzer, photos: list[bytes]) -> list[tuple]:
    """(pixels, landmarks) of every face of the photos, to align on."""
    frames = []
    for data in photos:
        image, factor = analyzer.decode(data)
        frame, detections, _ = analyzer.alignment_frame(data, image, analyzer.detector.detect(image, factor), factor)
        frames += [(frame, d.landmarks) for d in detections]
    return frames


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _memory_in_child(pack_name: str, threads: int, photos: list[bytes]) -> dict[str, float]:
    """Freed memory is handed back to the system before each reading, so what is counted is in use."""
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    trim(0)
    before = _status_kb("VmRSS")
    analyzer = FaceAnalyzer(load_pack(pack_name), threads)
    for data in photos:
        analyzer.faces_in_bytes(data)
    gc.collect()
    trim(0)
    return {"loaded_mb": (_status_kb("VmRSS") - before) / 1024, "peak_mb": (_status_kb("VmHWM") - before) / 1024}


def model_memory(pack_name: str, threads: int, photos: list[bytes]) -> dict[str, float]:
    """Resident memory the pack's models add to a fresh process: once loaded, and at peak while running."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_memory_in_child, (pack_name, threads, photos))


def bytes_per_face(pack_name: str, photos: list[bytes]) -> dict[str, float]:
    """Storage per face after adding ``photos`` to a fresh gallery with the pack."""
    with tempfile.TemporaryDirectory(prefix="pack-costs-") as scratch:
        settings = replace(Settings.from_env().at(Path(scratch)), models=pack_name)
        with build_services(settings, serving=True) as services:
            key = services.keys.create().record
            for data in photos:
                try:
                    services.adder.add(key, AddImage(Photo(data)))
                except ServiceError:
                    continue  # no face: nothing stored
            faces = services.catalog.images.gallery(key.gallery).faces
            indexes = cast(FaissIndexes, services.indexes)  # an embedded data directory: FAISS over LMDB
            indexes.save_all()
            pointer = indexes.files.pointer(key.gallery, 0)
            assert pointer is not None, "the checkpoint just written"
            index_bytes = (indexes.files.directory / pointer.file).stat().st_size
            env = cast(LmdbCatalog, services.catalog).env  # the LMDB environment: this measures its pages
            with env.reading() as txn:
                table = txn.stat(env.db["faces"])
            pages = table["branch_pages"] + table["leaf_pages"] + table["overflow_pages"]
            used = (env.env.info()["last_pgno"] + 1) * table["psize"]
            return {
                "faces": faces,
                "dim": services.analyzer.dim,
                "index": index_bytes / faces,
                "lmdb_faces_table": pages * table["psize"] / faces,
                "lmdb_overflow_pages_per_face": table["overflow_pages"] / faces,
                "lmdb_environment": used / faces,
            }


def reembed_costs(moves: list[tuple[str, str]], photos: list[bytes]) -> list[dict]:
    """Seconds per face of re-embedding a gallery of ``photos`` from one pack to another, each move
    on a gallery filled afresh with its source pack."""
    threads = Settings.from_env().threads_per_model
    result = []
    for source, target in moves:
        with tempfile.TemporaryDirectory(prefix="pack-costs-") as scratch:
            settings = replace(Settings.from_env().at(Path(scratch)), models=source)
            with build_services(settings) as services:
                key = services.keys.create().record
                for data in photos:
                    try:
                        services.adder.add(key, AddImage(Photo(data)))
                    except ServiceError:
                        continue
                faces = services.catalog.images.gallery(key.gallery).faces
                started = time.perf_counter()
                summary = services.reembedding.run(key, target)
                seconds = time.perf_counter() - started
        result.append({"from": source, "to": target, "faces": faces, "lost": summary.lost, "threads": threads,
                       "ms_per_face": 1000 * seconds / max(faces, 1)})  # fmt: skip
    return result


REEMBED_MOVES = [
    ("buffalo_s", "buffalo_s_edgeface"),
    ("buffalo_s_edgeface", "buffalo_s"),
    ("yunet_sface", "buffalo_s_edgeface"),
]


def measure(pack_names: list[str], count: int = 300) -> dict[str, dict]:
    """Every cost of every pack, on the same ``count`` LFW photos."""
    threads = Settings.from_env().threads_per_model
    photos = lfw_photos(count)
    speed = ms_per_photo(pack_names, photos, threads)
    search = ms_per_photo(pack_names, photos, threads, limit=1)
    faces = ms_per_face(pack_names, photos)
    probe = [photos[0], LARGE_PHOTO.read_bytes()] if LARGE_PHOTO.is_file() else photos[:1]
    return {
        name: {
            "ms_per_250px_photo": speed[name],
            "ms_per_250px_search": search[name],
            "ms_per_face": faces[name],
            "memory": model_memory(name, threads, probe),
            "storage": bytes_per_face(name, photos),
        }
        for name in pack_names
    }


def markdown(costs: dict[str, dict]) -> str:
    lines = [
        "| pack | ms per 250x250 photo: add / search | ms per face, 1 thread (each embedder) "
        "| models' memory (in use / peak) | dim | index bytes/face "
        "| LMDB faces table bytes/face | overflow pages/face | LMDB environment bytes/face |",
        "| --- |" + " ---: |" * 8,
    ]
    for name, cost in costs.items():
        memory, storage = cost["memory"], cost["storage"]
        per_face = " + ".join(f"{ms:.1f}" for ms in cost["ms_per_face"].values())
        lines.append(
            f"| {name} | {cost['ms_per_250px_photo']:.1f} / {cost['ms_per_250px_search']:.1f} | {per_face} "
            f"| {memory['loaded_mb']:.0f} / {memory['peak_mb']:.0f} MB "
            f"| {storage['dim']} | {storage['index']:.0f} | {storage['lmdb_faces_table']:.0f} "
            f"| {storage['lmdb_overflow_pages_per_face']:.2f} | {storage['lmdb_environment']:.0f} |"
        )
    return "\n".join(lines)


def reembed_markdown(moves: list[dict]) -> str:
    lines = ["| re-embedding | faces | faces lost | ms per face |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {m['from']} -> {m['to']} | {m['faces']} | {m['lost']} | {m['ms_per_face']:.1f} |" for m in moves]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default="buffalo_s,yunet_sface", help="comma-separated model packs")
    parser.add_argument("--photos", type=int, default=300, help="LFW photos timed and stored")
    parser.add_argument("--reembed", action="store_true", help="only the cost per face of moving a gallery")
    args = parser.parse_args(argv)
    if args.reembed:
        moves = reembed_costs(REEMBED_MOVES, lfw_photos(args.photos))
        print(reembed_markdown(moves))
        print(json.dumps(moves, indent=2))
        return 0
    costs = measure(args.pack.split(","), args.photos)
    print(markdown(costs))
    print(json.dumps(costs, indent=2))
    return 0
