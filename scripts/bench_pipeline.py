"""Where a photo's time goes, and how close the service comes to the models alone.

  python scripts/bench_pipeline.py [--lfw 120] [--configs 2x1x4,1x2x4] [--out reports/bench]

Three measurements over the same realistic mix of photos (LFW 250x250 crops and the
large photos of deepface-unit and fr-examples), in one run so their ratios hold even
on a machine shared with other work:

1. the floor: SCRFD and ArcFace alone, onnxruntime with one intra-op thread, on photos
   decoded beforehand, called as the insightface models are used without any service (a
   pack of several embedders runs each, EdgeFace one face at a time as its graph requires);
2. the service's stages in this process (base64 decode, image decode, detection,
   alignment, embedding, index add, index search), with one and two model threads;
3. a real gunicorn server on loopback: latency and throughput of POST /images and
   POST /search with 1, 2 and 4 concurrent clients, per server configuration
   ``WORKERS x MODEL_THREADS x SERVER_THREADS`` (FACE_SEARCH_WORKERS x
   FACE_SEARCH_MODEL_THREADS x FACE_SEARCH_THREADS).

Beside each server with several workers, as many floors run at once in their own processes:
the photos per second the cores give the models alone, the ceiling of that server's ratio.

It prints the ratios to the floor and the targets: an added photo at one client within
1.3x the floor's time, four clients at 1.9x the floor's photos per second or more (both
cores at work), and no request slower than 4x the median. ``--pack A,B`` measures each
pack in turn in the same run (``make bench`` compares buffalo_s with buffalo_s_edgeface).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import onnxruntime as ort
import requests
from insightface.model_zoo import get_model
from insightface.utils import face_align

from models.analyzer import enlarged
from models.decode import decode_image
from models.faces import Face
from models.packs import load_pack
from service.api.paths import API
from service.core.config import Settings
from service.core.images import decode_base64
from service.core.services import build_services
from service.harness.live import KEY, SECRET, LiveServer
from service.harness.photos import DATASETS

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 2, 4)


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes

    @property
    def body(self) -> str:
        return json.dumps({"image": {"base64": base64.b64encode(self.data).decode()}})

    @property
    def refused_body(self) -> str:
        """The same size of request, refused after its base64 is decoded: the cost of HTTP alone."""
        return json.dumps({"image": {"base64": base64.b64encode(b"\0\0\0" + self.data[3:]).decode()}})


def photo_mix(lfw: int) -> list[Photo]:
    """Every n-th LFW photo plus every photo of deepface-unit and fr-examples, interleaved."""
    with open(DATASETS / "lfw" / "manifest.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    small = [DATASETS / "lfw" / p for p in paths[:: max(1, len(paths) // lfw)][:lfw]]
    large = sorted((DATASETS / "deepface-unit" / "images").glob("*/*")) + sorted(
        (DATASETS / "fr-examples" / "images").glob("*/*")
    )
    step = max(1, len(small) // max(len(large), 1))
    mixed: list[Path] = []
    for i, path in enumerate(small):
        mixed.append(path)
        if i % step == step - 1 and large:
            mixed.append(large.pop(0))
    mixed += large
    return [Photo(f"{p.parent.parent.parent.name}/{p.name}", p.read_bytes()) for p in mixed]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# -- 1. the floor -------------------------------------------------------------------------


def floor_ms(photos: list[Photo], pack_name: str, start: Barrier | None = None) -> list[float]:
    """Per photo: detector + alignment + embedder as insightface runs them, one thread, pixels
    ready; with ``start``, the measured photos begin when every party has warmed up."""
    pack = load_pack(pack_name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    detector = get_model(str(pack.detector.path), providers=["CPUExecutionProvider"], sess_options=options)
    detector.prepare(-1, input_size=(pack.detector_input_size,) * 2, det_thresh=pack.detector_score_threshold)
    embedders = [
        (get_model(str(model.path), providers=["CPUExecutionProvider"], sess_options=options), model.model)
        for model in pack.embedders
    ]
    images = [decode_image(p.data) for p in photos]
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for n, image in enumerate(images[:3] + images):  # the first runs warm the sessions up
            if n == 3 and start is not None:
                start.wait()
            started = time.perf_counter()
            _, landmarks = detector.detect(image, input_size=(pack.detector_input_size,) * 2)
            crops = [face_align.norm_crop(image, points) for points in landmarks]
            for embedder, kind in embedders if crops else ():
                for batch in [[crop] for crop in crops] if kind == "edgeface" else [crops]:  # its graph takes one
                    embedder.get_feat(batch)
            times.append(_ms(started))
    return times[3:]


def _floor_in_process(photos: list[Photo], pack_name: str, start: Barrier, results: Queue) -> None:
    results.put(sum(floor_ms(photos, pack_name, start)))


def floors_side_by_side(photos: list[Photo], pack_name: str, processes: int) -> float:
    """Photos per second of ``processes`` floors at once, each in its own process over the same
    photos: what the cores give this work when nothing else (no HTTP, no decode, no storage)
    shares them, the ceiling for a server's throughput on this machine."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_floor_in_process, args=(photos, pack_name, start, results)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    busy_ms = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(len(photos) * 1000 / ms for ms in busy_ms)


# -- 2. the stages in this process --------------------------------------------------------

SUCCESS, NOT_A_PHOTO = 0, 1  # the API's status_code of a success and of bytes that are no photo
STAGES = ("base64", "decode", "detection", "alignment", "embedding", "index add", "index search")


def stage_ms(photos: list[Photo], pack_name: str, threads: int) -> dict[str, float]:
    """Mean milliseconds per photo of each stage, through the analyzer and use cases the service calls."""
    totals = dict.fromkeys(STAGES, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        settings = replace(Settings().at(Path(scratch)), models=pack_name, model_threads=threads)
        with build_services(settings) as services:
            key = services.keys.create().record
            analyzer, searcher = services.analyzer, services.searcher
            for photo in photos[:3]:
                analyzer.faces_in_bytes(photo.data)
            for photo in photos:
                encoded = base64.b64encode(photo.data).decode()
                started = time.perf_counter()
                data = decode_base64(encoded)
                totals["base64"] += _ms(started)
                started = time.perf_counter()
                image, factor = analyzer.decode(data)
                totals["decode"] += _ms(started)
                started = time.perf_counter()
                detections = analyzer.detector.detect(image, scale=factor)
                totals["detection"] += _ms(started)
                started = time.perf_counter()
                frame, detections, factor = analyzer.alignment_frame(data, image, detections, factor)
                crops = [analyzer.embedder.align(frame, d.landmarks) for d in detections]
                totals["alignment"] += _ms(started)
                started = time.perf_counter()
                vectors = analyzer.embedder.embed_crops(crops)
                totals["embedding"] += _ms(started)
                faces = [Face(enlarged(d, factor), v) for d, v in zip(detections, vectors, strict=True)]
                if not faces:
                    continue
                started = time.perf_counter()
                services.gallery.store(key, data, {}, faces, services.pack)
                totals["index add"] += _ms(started)
                started = time.perf_counter()
                searcher.best_per_image(key, faces[0].embedding, 5, searcher.default_threshold(key.gallery))
                totals["index search"] += _ms(started)
    return {stage: total / len(photos) for stage, total in totals.items()}


# -- 3. the real server --------------------------------------------------------------------


@dataclass
class Load:
    clients: int
    latencies: list[float]
    seconds: float
    errors: int

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q))

    @property
    def worst_to_median(self) -> float:
        return max(self.latencies) / statistics.median(self.latencies)


def drive(url: str, path: str, bodies: list[str], clients: int, accepted: tuple[int, ...] = (SUCCESS,)) -> Load:
    """Send every body once, spread over ``clients`` threads each with its own connection."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def client() -> None:
        session = requests.Session()
        session.auth = (KEY, SECRET)
        headers = {"Content-Type": "application/json"}
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop(0)
            started = time.perf_counter()
            try:
                code = session.post(url + API + path, data=body, headers=headers, timeout=120).json()["status_code"]
            except requests.RequestException:
                code = None
            elapsed = _ms(started)
            with lock:
                latencies.append(elapsed)
                errors[0] += code not in accepted

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Load(clients, latencies, time.perf_counter() - started, errors[0])


def server_loads(
    photos: list[Photo], pack: str, workers: int, model_threads: int, server_threads: int
) -> dict[str, list[Load]]:
    bodies = [p.body for p in photos]
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        env = {
            "FACE_SEARCH_MODELS": pack,
            "FACE_SEARCH_WORKERS": str(workers),
            "FACE_SEARCH_MODEL_THREADS": str(model_threads),
            "FACE_SEARCH_THREADS": str(server_threads),
            "FACE_SEARCH_RATE_LIMIT": "0",  # the per-key limit would cap the clients, not the pipeline
        }
        server = LiveServer(Path(scratch), env).start()
        try:
            drive(server.url, "/search", bodies[:4], 1)  # warm up (answers "no face in gallery" fast)
            refused = drive(server.url, "/images", [p.refused_body for p in photos], 1, accepted=(NOT_A_PHOTO,))
            adds = [drive(server.url, "/images", bodies, clients) for clients in CLIENTS]
            searches = [drive(server.url, "/search", bodies, clients) for clients in CLIENTS]
        finally:
            server.stop()
    return {"HTTP alone": [refused], "POST /images": adds, "POST /search": searches}


# -- report ---------------------------------------------------------------------------------


def bench_pack(photos: list[Photo], pack: str, configs: str) -> dict:
    """The floor, the stages and each server configuration of one pack."""
    print(f"## {pack}\n")
    floor = floor_ms(photos, pack)
    floor_mean = statistics.fmean(floor)
    report: dict = {"pack": pack, "photos": len(photos), "floor_ms": floor_mean, "floor_per_second": 1000 / floor_mean}
    print(
        f"floor (detector + embedder alone, 1 thread): {floor_mean:.1f} ms per photo, "
        f"{1000 / floor_mean:.1f} photos/s\n"
    )

    stages = {threads: stage_ms(photos, pack, threads) for threads in (1, 2)}
    report["stages"] = stages
    print("| stage | ms/photo, 1 model thread | ms/photo, 2 model threads |")
    print("| --- | ---: | ---: |")
    for stage in STAGES:
        print(f"| {stage} | {stages[1][stage]:.1f} | {stages[2][stage]:.1f} |")
    for threads in (1, 2):
        stages[threads]["total"] = sum(stages[threads][s] for s in STAGES if s != "index search")
    print(f"| in-process add, total | {stages[1]['total']:.1f} | {stages[2]['total']:.1f} |")
    print(f"| ratio to the floor | {stages[1]['total'] / floor_mean:.2f} | {stages[2]['total'] / floor_mean:.2f} |\n")

    report["servers"] = {}
    print(
        "| server (workers x model x server threads) | endpoint | clients | photos/s | x floor photos/s | p50 ms "
        "| p99 ms | max/median | mean ms / floor ms | errors |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for config in configs.split(","):
        workers, model_threads, server_threads = (int(v) for v in config.split("x"))
        # The floor again, just before this server runs: other work on the machine drifts.
        floor_mean = statistics.fmean(floor_ms(photos, pack))
        ceiling = floors_side_by_side(photos, pack, workers) * floor_mean / 1000 if workers > 1 else 1.0
        loads = server_loads(photos, pack, workers, model_threads, server_threads)
        report["servers"][config] = {
            "floor_ms": floor_mean,
            "floors_side_by_side_x_floor": ceiling,
            **{
                endpoint: [
                    {
                        "clients": load.clients,
                        "per_second": load.per_second,
                        "p50": load.percentile(50),
                        "p99": load.percentile(99),
                        "max": max(load.latencies),
                        "errors": load.errors,
                    }
                    for load in runs
                ]
                for endpoint, runs in loads.items()
            },
        }
        for endpoint, runs in loads.items():
            for load in runs:
                print(
                    f"| {config} | {endpoint} | {load.clients} | {load.per_second:.1f} "
                    f"| {load.per_second * floor_mean / 1000:.2f} | {load.percentile(50):.0f} "
                    f"| {load.percentile(99):.0f} | {load.worst_to_median:.1f} "
                    f"| {statistics.fmean(load.latencies) / floor_mean:.2f} | {load.errors} |"
                )
        adds = loads["POST /images"]
        one, four = adds[0], adds[-1]
        checks = {
            "added photo at 1 client <= 1.3x floor": statistics.fmean(one.latencies) / floor_mean,
            "4 clients >= 1.9x floor photos/s": four.per_second * floor_mean / 1000,
            f"{workers} floors side by side, x floor photos/s": ceiling,
            f"4 clients / {workers} floors side by side": four.per_second * floor_mean / 1000 / ceiling,
            "4 clients slowest <= 4x median": four.worst_to_median,
        }
        report["servers"][config]["checks"] = checks
        print(
            f"  floor just before: {floor_mean:.1f} ms/photo; " + "; ".join(f"{k}: {v:.2f}" for k, v in checks.items())
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=int, default=120, help="LFW photos in the mix (plus 56 large photos)")
    parser.add_argument("--pack", default="buffalo_s", help="comma-separated model packs, measured in turn")
    parser.add_argument(
        "--configs",
        default="2x1x4",
        help="server configurations WORKERSxMODEL_THREADSxSERVER_THREADS, comma-separated",
    )
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    args = parser.parse_args(argv)
    photos = photo_mix(args.lfw)
    large = sum(not p.name.startswith("lfw/") for p in photos)
    print(f"{len(photos)} photos: {len(photos) - large} LFW 250x250, {large} large (300-4100 px)\n")
    report = {"packs": {pack: bench_pack(photos, pack, args.configs) for pack in args.pack.split(",")}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
