"""Where a photo's time goes, and how close the service comes to the models alone.

  python scripts/bench_pipeline.py [--pack buffalo_s_edgeface] [--lfw 40 --large 20]
      [--configs 2x1x4,1x2x4] [--runtimes pack onnxruntime detector=openvino-bf16,embedders=onnxruntime]
      [--stages] [--profile]
      [--out reports/bench]

Measurements over the same realistic mix of photos (LFW 250x250 crops and the large photos
of deepface-unit and fr-examples), in one run so their ratios hold even on a machine shared
with other work:

1. the floor: the detector and the embedders alone, onnxruntime fp32 with one intra-op
   thread, on photos decoded beforehand, called as the insightface models are used without
   any service (a pack of several embedders runs each, EdgeFace one face at a time as its
   graph requires); and two floors side by side in their own processes, the photos per
   second two cores give the models alone (measured again just before each server);
2. with ``--stages``, the service's stages in this process (base64 decode, image decode,
   detection, alignment, embedding, index add, index search), with one and two model threads;
3. a real gunicorn server on loopback: latency, throughput and the CPU the workers and the
   clients used, of POST /images and POST /search with 1, 2 and 4 concurrent clients, per
   server configuration ``WORKERS x MODEL_THREADS x SERVER_THREADS`` (FACE_SEARCH_WORKERS x
   FACE_SEARCH_MODEL_THREADS x FACE_SEARCH_THREADS); with ``--profile``, py-spy samples the
   workers at 1 and 4 clients and the table says where their CPU went beyond the models;
4. per runtime variant (``--runtimes``: FACE_SEARCH_MODEL_RUNTIME values, ``pack`` for each
   pack.json's own choice), the service's models alone on that runtime (one thread, pixels
   ready, the floor's work) against the same models on ONNX Runtime, the cost of the first
   run at each new input shape (the detector's input follows the photo), and each server
   configuration run with that variant. The floor stays the insightface onnxruntime fp32 one.

Each server's table holds the figures of issue 30 against the floor of the same run and its
targets: four clients adding at 0.9x two floors side by side or more, and 2.5x one floor's
photos/s; one client searching within 0.6x the floor's time; the slowest add within 3x the
median at four clients. ``--pack A,B`` measures each pack in turn; bench.json under ``--out``
holds every figure.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import onnxruntime as ort
import requests
from insightface.model_zoo import get_model
from insightface.utils import face_align

from models import transforms
from models.analyzer import enlarged
from models.decode import decode_image
from models.faces import Face
from models.packs import load_pack, with_runtime
from models.runtime import parse_override
from models.zoo import detector_model, embedder_model
from service.api.errors import Code
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


def photo_mix(lfw: int, large_count: int | None = None) -> list[Photo]:
    """Every n-th LFW photo plus every (or every n-th, ``large_count`` in all) photo of
    deepface-unit and fr-examples, interleaved."""
    with open(DATASETS / "lfw" / "manifest.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    small = [DATASETS / "lfw" / p for p in paths[:: max(1, len(paths) // lfw)][:lfw]]
    large = sorted((DATASETS / "deepface-unit" / "images").glob("*/*")) + sorted(
        (DATASETS / "fr-examples" / "images").glob("*/*")
    )
    if large_count is not None:
        large = large[:: max(1, len(large) // max(large_count, 1))][:large_count]
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


def floor_ms(
    photos: list[Photo], pack_name: str, start: Barrier | None = None, cpu: list[float] | None = None
) -> list[float]:
    """Per photo: detector + alignment + embedder as insightface runs them, one thread, pixels
    ready; with ``start``, the measured photos begin when every party has warmed up; ``cpu``
    gets the CPU milliseconds of each photo (what a machine shared with other work inflates less
    than the time)."""
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
            started, cpu_started = time.perf_counter(), time.process_time()
            _, landmarks = detector.detect(image, input_size=(pack.detector_input_size,) * 2)
            crops = [face_align.norm_crop(image, points) for points in landmarks]
            for embedder, kind in embedders if crops else ():
                for batch in [[crop] for crop in crops] if kind == "edgeface" else [crops]:  # its graph takes one
                    embedder.get_feat(batch)
            times.append(_ms(started))
            if cpu is not None and n >= 3:
                cpu.append((time.process_time() - cpu_started) * 1000)
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


def models_alone_ms(photos: list[Photo], pack_name: str, runtime: str) -> dict[str, float]:
    """The floor's work (detector at the pack's input, alignment, every embedder) by the service's
    model classes on ``runtime`` (a FACE_SEARCH_MODEL_RUNTIME value, ``pack``: the pack's choice),
    one thread, pixels ready: mean ms per photo, and CPU ms (every thread of this process), on a
    first pass, where each new input shape is met for the first time, and on a second pass."""
    pack = load_pack(pack_name, check=False)
    if runtime != "pack":
        pack = with_runtime(pack, parse_override(runtime))
    detector = detector_model(pack.detector, 1)
    embedders = [embedder_model(model, 1) for model in pack.embedders]
    side = pack.detector_input_size
    images = [decode_image(p.data) for p in photos]
    passes = []
    for _ in range(2):
        started, cpu_started = time.perf_counter(), time.process_time()
        for image in images:
            found = detector.detect(image, (side, side), pack.detector_score_threshold)
            crops = [transforms.aligned(image, points, embedders[0].crop_size) for points in found.landmarks]
            for embedder in embedders if crops else ():
                embedder.embed(crops)
        passes.append((_ms(started) / len(images), (time.process_time() - cpu_started) * 1000 / len(images)))
    (first, first_cpu), (second, second_cpu) = passes
    return {
        "first pass ms/photo": first,
        "first pass CPU ms/photo": first_cpu,
        "ms/photo": second,
        "CPU ms/photo": second_cpu,
    }


# -- 2. the stages in this process --------------------------------------------------------

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


def drive(url: str, path: str, bodies: list[str], clients: int, accepted: tuple[int, ...] = (Code.SUCCESS,)) -> Load:
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


def worker_pids(server: LiveServer) -> list[int]:
    """The gunicorn master's children: the worker processes."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (from /proc, in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / ticks


# Where a sampled stack's time goes: first the calls whose whole subtree is one thing (the
# models, the storage a request makes durable), wherever they are in the stack; else the
# innermost frame that names a category (the handling of the bytes, the HTTP server, waiting).
WRAPPERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("models (runtime's run)", ("run (onnxruntime/", "infer (openvino/")),
    ("request count (quota commit)", ("count_request (", "charge (")),
    ("throttles", ("core/throttle.py", "run_state.py")),
    ("photo file write + fsync", ("core/photos.py",)),
    ("catalog commit (LMDB)", ("lmdb/environment.py",)),
    ("vector index", ("index/faiss/",)),
)
INNERMOST: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("photo decode", ("models/decode.py", "imdecode")),
    ("model input/output (resize, blob, anchors, NMS, alignment)", ("models/",)),
    ("base64", ("b64decode", "b64encode", "base64.py")),
    ("JSON", ("json/", "get_json", "render.py", "jsonify")),
    ("waiting for a connection (epoll)", ("selectors.py",)),
    ("HTTP server, framework", ("gunicorn/", "flask/", "werkzeug/", "socket", "http/")),
    ("API layer, use cases", ("service/api/", "service/core/", "index/")),
)
CATEGORIES = WRAPPERS + INNERMOST
OTHER = "other (interpreter, threads, GC)"


def categorize(stack: str) -> str:
    for name, patterns in WRAPPERS:
        if any(pattern in stack for pattern in patterns):
            return name
    for frame in reversed(stack.split(";")):
        for name, patterns in INNERMOST:
            if any(pattern in frame for pattern in patterns):
                return name
    return OTHER


class Profile:
    """py-spy sampling every worker (on-CPU stacks only) while a load runs; what share of their
    samples each category of ``CATEGORIES`` took."""

    def __init__(self, pids: list[int], folder: Path, name: str, rate: int = 250) -> None:
        self.rate, self.files = rate, [folder / f"{name}-{pid}.txt" for pid in pids]
        spy = str(Path(sys.executable).parent / "py-spy")
        record = [spy, "record", "--rate", str(rate), "--nonblocking", "--format", "raw"]
        self.samplers = [
            subprocess.Popen(
                [*record, "--pid", str(pid), "--output", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, out in zip(pids, self.files, strict=True)
        ]
        time.sleep(1.0)  # attached before the load starts

    def stop(self) -> dict[str, float]:
        """Seconds of on-CPU samples per category, all workers together."""
        for sampler in self.samplers:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for sampler in self.samplers:
            sampler.wait(timeout=60)
        seconds: dict[str, float] = {}
        for path in self.files:
            for line in path.read_text().splitlines() if path.exists() else ():
                stack, _, count = line.rpartition(" ")
                category = categorize(stack)
                seconds[category] = seconds.get(category, 0.0) + int(count) / self.rate
        return seconds


@dataclass
class Phase:
    """One load and the CPU it cost: the server's workers and this process (the clients)."""

    load: Load
    server_cpu: float
    client_cpu: float
    profile: dict[str, float] | None = None

    def summary(self) -> dict:
        load = self.load
        return {
            "clients": load.clients,
            "photos": len(load.latencies),
            "per_second": load.per_second,
            "mean_ms": statistics.fmean(load.latencies),
            "p50": load.percentile(50),
            "p99": load.percentile(99),
            "max": max(load.latencies),
            "errors": load.errors,
            "server_cpu_ms_per_photo": self.server_cpu * 1000 / len(load.latencies),
            "client_cpu_ms_per_photo": self.client_cpu * 1000 / len(load.latencies),
            **({"profile_seconds": self.profile} if self.profile is not None else {}),
        }


def measured(server: LiveServer, run: Callable[[], Load], profile_to: Path | None = None, name: str = "") -> Phase:
    pids = worker_pids(server)
    profile = Profile(pids, profile_to, name) if profile_to is not None else None
    server_before, client_before = cpu_seconds(pids), time.process_time()
    load = run()
    server_cpu, client_cpu = cpu_seconds(pids) - server_before, time.process_time() - client_before
    return Phase(load, server_cpu, client_cpu, profile.stop() if profile is not None else None)


def server_loads(
    photos: list[Photo],
    pack: str,
    workers: int,
    model_threads: int,
    server_threads: int,
    profile_to: Path | None = None,
    runtime: str = "pack",
) -> dict[str, list[Phase]]:
    """Each endpoint under 1, 2 and 4 clients, the models on ``runtime``; with ``profile_to``, adds
    and searches at 1 and 4 clients are run once more, sampled by py-spy into that folder."""
    bodies = [p.body for p in photos]
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        env = {
            "FACE_SEARCH_MODELS": pack,
            "FACE_SEARCH_WORKERS": str(workers),
            "FACE_SEARCH_MODEL_THREADS": str(model_threads),
            "FACE_SEARCH_THREADS": str(server_threads),
            "FACE_SEARCH_RATE_LIMIT": "0",  # the per-key limit would cap the clients, not the pipeline
            "FACE_SEARCH_MODEL_RUNTIME": runtime,
        }
        # a loaded machine takes minutes to start workers that compile their models for this CPU
        server = LiveServer(Path(scratch), env).start(timeout=300)
        config = f"{workers}x{model_threads}x{server_threads}-{runtime}"

        def phase(path: str, clients: int, sent: list[str], accepted: tuple[int, ...] = (Code.SUCCESS,)) -> Phase:
            def load() -> Load:
                return drive(server.url, path, sent, clients, accepted)

            timed = measured(server, load)
            if profile_to is None or clients not in (1, 4):
                return timed
            # py-spy's sampling takes CPU from the two cores the server needs, so the profile comes
            # from a second pass of the same load and the timed figures from the pass without it
            sampled = measured(server, load, profile_to, f"{config}-{path.strip('/')}-{clients}")
            return replace(timed, profile=sampled.profile)

        try:
            drive(server.url, "/search", bodies[:4], 1)  # warm up (answers "no face in gallery" fast)
            refused = phase("/images", 1, [p.refused_body for p in photos], accepted=(Code.NO_CONTENT,))
            adds = [phase("/images", clients, bodies) for clients in CLIENTS]
            searches = [phase("/search", clients, bodies) for clients in CLIENTS]
        finally:
            server.stop()
    return {"HTTP alone": [refused], "POST /images": adds, "POST /search": searches}


def fsyncs_per_request(photos: list[Photo], pack: str, clients: int = 4) -> dict[str, float]:
    """fsync and fdatasync calls of a default server (2 x 1 x 4) per added photo and per search
    at ``clients`` clients, traced by strace over every process of the server: what group commit
    shares, a count that other work on the machine does not move."""
    bodies = [p.body for p in photos]
    with tempfile.TemporaryDirectory(prefix="bench-fsyncs-") as scratch:
        trace = Path(scratch) / "strace.txt"
        tracer = ("strace", "-f", "-qq", "-ttt", "-e", "trace=fsync,fdatasync", "-o", str(trace))
        env = {"FACE_SEARCH_MODELS": pack, "FACE_SEARCH_RATE_LIMIT": "0"}
        server = LiveServer(Path(scratch) / "data", env, wrap=tracer).start(timeout=180)
        phases = []
        try:
            drive(server.url, "/search", bodies[:4], 1)  # warm up: the models and the key's first count
            for what, path in (("per added photo", "/images"), ("per search", "/search")):
                began = time.time()
                load = drive(server.url, path, bodies, clients)
                phases.append((what, began, time.time(), len(load.latencies)))
        finally:  # strace passes no signal on: stop gunicorn itself
            master = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout
            for pid in master.split():
                os.kill(int(pid), signal.SIGTERM)
            if server.process is not None:
                server.process.wait(timeout=60)
        times = [float(line.split()[1]) for line in trace.read_text().splitlines() if "sync(" in line]
    return {what: sum(began <= t <= ended for t in times) / n for what, began, ended, n in phases}


# -- report ---------------------------------------------------------------------------------


# The issue-30 targets, each against the single-thread floor of the same run.
TARGETS = {
    "4 clients adding / 2 floors side by side": (">=", 0.9),
    "4 clients adding, x floor photos/s": (">=", 2.5),
    "1 client searching, x floor time": ("<=", 0.6),
    "4 clients adding, slowest / median": ("<=", 3.0),
}


def server_table(
    config: str, floor_mean: float, floor_cpu: float, floors: float, loads: dict[str, list[Phase]]
) -> dict[str, float]:
    """Print the table of one server against the floors measured just before it; the figures."""
    adds, searches = loads["POST /images"], loads["POST /search"]
    one, four, search = adds[0].load, adds[-1].load, searches[0].load
    figures = {
        "floor, 1 thread, ms/photo": floor_mean,
        "floor, 1 thread, CPU ms/photo": floor_cpu,
        "2 floors side by side, x floor photos/s": floors,
        "1 client adding, x floor time": statistics.fmean(one.latencies) / floor_mean,
        "4 clients adding, x floor photos/s": four.per_second * floor_mean / 1000,
        "4 clients adding / 2 floors side by side": four.per_second * floor_mean / 1000 / floors,
        "4 clients adding, slowest / median": four.worst_to_median,
        "4 clients adding, median / floor time": statistics.median(four.latencies) / floor_mean,
        "1 client searching, x floor time": statistics.fmean(search.latencies) / floor_mean,
        "server CPU per added photo, 1 client, x floor CPU": adds[0].server_cpu * 1000 / len(one.latencies) / floor_cpu,
        "server CPU per added photo, 4 clients, x floor CPU": adds[-1].server_cpu
        * 1000
        / len(four.latencies)
        / floor_cpu,
        "client CPU per added photo, 4 clients, x floor CPU": adds[-1].client_cpu
        * 1000
        / len(four.latencies)
        / floor_cpu,
        "server CPU per search, 1 client, x floor CPU": searches[0].server_cpu
        * 1000
        / len(search.latencies)
        / floor_cpu,
    }
    print(f"### server {config} (workers x model threads x request threads)\n")
    print("| what | figure | target |")
    print("| --- | ---: | --- |")
    for what, value in figures.items():
        target = TARGETS.get(what)
        mark = ""
        if target is not None:
            held = value >= target[1] if target[0] == ">=" else value <= target[1]
            mark = f"{target[0]} {target[1]}: {'met' if held else 'NOT met'}"
        print(f"| {what} | {value:.2f} | {mark} |")
    print()
    print(
        "| endpoint | clients | photos/s | x floor photos/s | p50 ms | p99 ms | max/median | mean / floor "
        "| server CPU ms/photo | client CPU ms/photo | errors |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for endpoint, runs in loads.items():
        for run in runs:
            load, n = run.load, len(run.load.latencies)
            print(
                f"| {endpoint} | {load.clients} | {load.per_second:.1f} | {load.per_second * floor_mean / 1000:.2f} "
                f"| {load.percentile(50):.0f} | {load.percentile(99):.0f} | {load.worst_to_median:.1f} "
                f"| {statistics.fmean(load.latencies) / floor_mean:.2f} | {run.server_cpu * 1000 / n:.1f} "
                f"| {run.client_cpu * 1000 / n:.1f} | {load.errors} |"
            )
    print()
    profile_table(loads, floor_mean, floor_cpu)
    return figures


def profile_table(loads: dict[str, list[Phase]], floor_mean: float, floor_cpu: float) -> None:
    """Where the workers' CPU went per photo, for the sampled loads."""
    sampled = [
        (f"{endpoint}, {run.load.clients} client(s)", run)
        for endpoint, runs in loads.items()
        for run in runs
        if run.profile is not None
    ]
    if not sampled:
        return
    names = [name for name, _ in CATEGORIES] + [OTHER]
    # py-spy counts a thread busy while it runs or waits for a core (not for a lock or I/O):
    # on a loaded machine these milliseconds exceed the CPU the workers used; the shares hold.
    print("Workers' busy thread time per photo by py-spy samples, ms (and share):\n")
    print("| category | " + " | ".join(label for label, _ in sampled) + " |")
    print("| --- |" + " ---: |" * len(sampled))
    for name in names:
        cells = []
        for _, run in sampled:
            profile = run.profile or {}
            total = sum(profile.values()) or 1.0
            ms = profile.get(name, 0.0) * 1000 / len(run.load.latencies)
            cells.append(f"{ms:.2f} ({profile.get(name, 0.0) / total:.0%})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    totals = [sum((run.profile or {}).values()) * 1000 / len(run.load.latencies) for _, run in sampled]
    print("| all sampled | " + " | ".join(f"{t:.2f}" for t in totals) + " |")
    print(f"\n(floor: {floor_mean:.1f} ms/photo, {floor_cpu:.1f} CPU ms/photo)\n")


def bench_pack(
    photos: list[Photo], pack: str, configs: str, stages: bool, profile_to: Path | None, runtimes: list[str]
) -> dict:
    """The floor, the stages, the models alone on each runtime and each server configuration with each."""
    print(f"## {pack}\n")
    floor = floor_ms(photos, pack)
    floor_mean = statistics.fmean(floor)
    report: dict = {"pack": pack, "photos": len(photos), "floor_ms": floor_mean, "floor_per_second": 1000 / floor_mean}
    print(
        f"floor (detector + embedder alone, 1 thread): {floor_mean:.1f} ms per photo, "
        f"{1000 / floor_mean:.1f} photos/s\n"
    )
    if stages:
        report["stages"] = stage_table(photos, pack, floor_mean)
    report["models_alone"] = runtime_table(photos, pack, runtimes)
    report["servers"] = {}
    for config in filter(None, configs.split(",")):
        workers, model_threads, server_threads = (int(v) for v in config.split("x"))
        for runtime in runtimes:
            # The floors again, just before this server runs: other work on the machine drifts.
            cpu: list[float] = []
            floor_mean = statistics.fmean(floor_ms(photos, pack, cpu=cpu))
            floors = floors_side_by_side(photos, pack, 2) * floor_mean / 1000
            loads = server_loads(photos, pack, workers, model_threads, server_threads, profile_to, runtime)
            figures = server_table(f"{config}-{runtime}", floor_mean, statistics.fmean(cpu), floors, loads)
            report["servers"][f"{config}-{runtime}"] = {
                "figures": figures,
                **{endpoint: [run.summary() for run in runs] for endpoint, runs in loads.items()},
            }
    return report


def runtime_table(photos: list[Photo], pack: str, runtimes: list[str]) -> dict[str, dict[str, float]]:
    """The service's models alone on each runtime, against the same models on ONNX Runtime fp32 in this run."""
    measured = {
        runtime: models_alone_ms(photos, pack, runtime) for runtime in dict.fromkeys(["onnxruntime", *runtimes])
    }
    reference = measured["onnxruntime"]
    print(
        "| models alone, 1 thread, on | ms/photo | CPU ms/photo | x onnxruntime fp32 time | x its CPU "
        "| first pass (new shapes) / second, CPU |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for runtime, figures in measured.items():
        figures["x onnxruntime"] = figures["ms/photo"] / reference["ms/photo"]
        figures["x onnxruntime CPU"] = figures["CPU ms/photo"] / reference["CPU ms/photo"]
        new_shapes = figures["first pass CPU ms/photo"] / figures["CPU ms/photo"]
        print(
            f"| {runtime} | {figures['ms/photo']:.1f} | {figures['CPU ms/photo']:.1f} | {figures['x onnxruntime']:.2f} "
            f"| {figures['x onnxruntime CPU']:.2f} | {new_shapes:.2f} |"
        )
    print()
    return measured


def stage_table(photos: list[Photo], pack: str, floor_mean: float) -> dict[int, dict[str, float]]:
    stages = {threads: stage_ms(photos, pack, threads) for threads in (1, 2)}
    print("| stage | ms/photo, 1 model thread | ms/photo, 2 model threads |")
    print("| --- | ---: | ---: |")
    for stage in STAGES:
        print(f"| {stage} | {stages[1][stage]:.1f} | {stages[2][stage]:.1f} |")
    for threads in (1, 2):
        stages[threads]["total"] = sum(stages[threads][s] for s in STAGES if s != "index search")
    print(f"| in-process add, total | {stages[1]['total']:.1f} | {stages[2]['total']:.1f} |")
    print(f"| ratio to the floor | {stages[1]['total'] / floor_mean:.2f} | {stages[2]['total'] / floor_mean:.2f} |\n")
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=int, default=40, help="LFW photos in the mix")
    parser.add_argument("--large", type=int, default=20, help="large photos in the mix (at most 56)")
    parser.add_argument("--pack", default="buffalo_s_edgeface", help="comma-separated model packs, measured in turn")
    parser.add_argument(
        "--configs",
        default="2x1x4",
        help="server configurations WORKERSxMODEL_THREADSxSERVER_THREADS, comma-separated",
    )
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=["pack"],
        help="FACE_SEARCH_MODEL_RUNTIME values to run the servers with (pack: each pack.json's)",
    )
    parser.add_argument("--stages", action="store_true", help="also time the stages in this process")
    parser.add_argument("--profile", action="store_true", help="sample the workers with py-spy (adds, searches)")
    parser.add_argument("--fsyncs", action="store_true", help="count fsyncs per request at 4 clients (strace)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    args = parser.parse_args(argv)
    photos = photo_mix(args.lfw, args.large)
    large = sum(not p.name.startswith("lfw/") for p in photos)
    print(f"{len(photos)} photos: {len(photos) - large} LFW 250x250, {large} large (300-4100 px)\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profile_to = out / "profiles" if args.profile else None
    if profile_to is not None:
        profile_to.mkdir(exist_ok=True)
    packs = args.pack.split(",")
    report: dict = {
        "packs": {
            pack: bench_pack(photos, pack, args.configs, args.stages, profile_to, args.runtimes) for pack in packs
        }
    }
    if args.fsyncs:
        report["fsyncs"] = fsyncs_per_request(photos, packs[0])
        print(f"fsync + fdatasync calls at 4 clients, default server, {packs[0]}: ", end="")
        print("; ".join(f"{what}: {count:.2f}" for what, count in report["fsyncs"].items()))
    (out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {out / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
