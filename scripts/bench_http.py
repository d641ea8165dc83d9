"""The HTTP server in front of the app, measured: requests per second and latency of the same
requests against today's code and against this tree, in one run.

  python scripts/bench_http.py [--baseline main] [--seconds 10] [--rounds 3] [--clients 4] [--out reports/http]

Three servers run side by side, each a real gunicorn with two workers on a data directory
of its own holding the same ten photos:

- ``today``: the tree of ``--baseline`` (a git ref, extracted with git archive), as it serves;
- ``gthread``: this tree with gunicorn's own threaded worker (``--worker-class gthread``);
- ``envelope``: this tree as it serves, with service/api/server.py's EnvelopeWorker.

``gthread`` against ``envelope`` is the cost of the worker alone; ``today`` against
``envelope`` is the cost of everything this tree changed on those requests (signed links,
the code's other names). Each kind of request goes to each server in turn, ``--rounds``
times, for ``--seconds`` each, from ``--clients`` threads on kept-alive connections; the
requests are written byte for byte, so every side gets exactly the same bytes (which is why
the measured requests go through a socket of their own, not face_search_client, which seeds
the photos and lists the thumbnails' links; a link is loaded as a browser would, without
credentials). It prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from face_search_client import FaceSearchClient, FaceSearchError
from face_search_client.client import NO_FACE
from service.api.paths import API

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "bench", "bench-secret"


@dataclass
class Side:
    name: str
    tree: Path
    worker: str | None = None  # a gunicorn worker class in place of the configured one
    port: int = 0
    process: subprocess.Popen | None = None
    data_dir: Path = field(default=Path())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sample_photos() -> list[bytes]:
    import insightface

    folder = Path(insightface.__file__).parent / "data" / "images"
    return [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]


def extract(ref: str, into: Path) -> Path:
    """The tree of a git ref, as files."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def start(side: Side, root: Path) -> None:
    side.port = _free_port()
    side.data_dir = root / f"data-{side.name}"
    env = {
        **os.environ,
        "PYTHONPATH": str(side.tree),  # ahead of the editable install: this side's code is served
        "PORT": str(side.port),
        "FACE_SEARCH_DATA_DIR": str(side.data_dir),
        "FACE_SEARCH_API_KEY": KEY,
        "FACE_SEARCH_API_SECRET": SECRET,
        "FACE_SEARCH_WORKERS": "2",
        "FACE_SEARCH_RATE_LIMIT": "0",
        "FACE_SEARCH_LOG_LEVEL": "warning",
    }
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "service/api/gunicorn.conf.py"]
    if side.worker:
        command += ["--worker-class", side.worker]
    side.process = subprocess.Popen([*command, "service.api.wsgi:app"], cwd=side.tree, env=env)
    url = f"http://127.0.0.1:{side.port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/healthz", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{side.name}: the server did not start")


def client(side: Side) -> FaceSearchClient:
    return FaceSearchClient(f"http://127.0.0.1:{side.port}", KEY, SECRET)


def seed(side: Side, photos: list[bytes], count: int) -> None:
    for n in range(count):
        try:
            client(side).add_image(photos[n % len(photos)], {"n": n})
        except FaceSearchError as refused:
            assert refused.status_code == NO_FACE, refused


def stop(side: Side) -> None:
    if side.process is not None and side.process.poll() is None:
        side.process.send_signal(signal.SIGTERM)
        side.process.wait(timeout=60)


def requests_to_send(photo: bytes) -> dict[str, bytes]:
    """Each kind of request, as the bytes a client sends."""
    auth = "Authorization: Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    search = json.dumps({"image": {"base64": base64.b64encode(photo).decode()}}).encode()

    def request(line: str, *headers: str, body: bytes = b"") -> bytes:
        lines = [line, "Host: 127.0.0.1", *headers] + ([f"Content-Length: {len(body)}"] if body else [])
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    return {
        "GET /healthz": request("GET /healthz HTTP/1.1"),
        "GET /images, 10 listed": request(f"GET {API}/images?limit=10 HTTP/1.1", auth),
        "GET /images, 100 listed": request(f"GET {API}/images?limit=100 HTTP/1.1", auth),
        "POST /search, one face": request(
            f"POST {API}/search HTTP/1.1", auth, "Content-Type: application/json", body=search
        ),
        "refused by the server: a bad header name": request("GET /healthz HTTP/1.1", "Bad Name: x"),
    }


def _answer(sock: socket.socket) -> tuple[int, bool]:
    """Read one answer off a kept-alive connection: its status, and whether the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").lower().split("\r\n")
    length = next((int(line.split(":")[1]) for line in lines if line.startswith("content-length:")), 0)
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), "connection: close" in lines


def load(port: int, request: bytes, seconds: float, clients: int) -> list[float]:
    """Latencies (seconds) of every answer ``clients`` threads got in ``seconds``."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        sock = None
        while time.monotonic() < deadline:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            started = time.perf_counter()
            sock.sendall(request)
            _, closes = _answer(sock)
            latencies.append(time.perf_counter() - started)
            if closes:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def thumbnails(side: Side) -> dict[str, list[float]]:
    """Seconds to answer each stored image's thumbnail_url: the first time (made and kept),
    then again (read)."""
    links = [image.thumbnail_url for image in client(side).list_images(limit=1000).images]
    timed: dict[str, list[float]] = {"made": [], "kept": []}
    for kind in timed:
        for link in links:
            started = time.perf_counter()
            assert requests.get(link, timeout=120).status_code == 200
            timed[kind].append(time.perf_counter() - started)
    return timed


def _p50_p99(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return round(statistics.median(ordered) * 1000, 2), round(
        ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)] * 1000, 2
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="the git ref of today's code")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--images", type=int, default=100, help="photos stored on each server")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "http")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-http-"))
    sides = [
        Side("today", extract(args.baseline, root / "baseline")),
        Side("gthread", ROOT, "gthread"),
        Side("envelope", ROOT),
    ]
    photos = _sample_photos()
    kinds = requests_to_send(photos[0])
    latencies: dict[tuple[str, str], list[float]] = {}
    elapsed: dict[tuple[str, str], float] = {}
    load_before = os.getloadavg()
    try:
        for side in sides:
            start(side, root)
            seed(side, photos, args.images)
        for _ in range(args.rounds):
            for kind, request in kinds.items():
                for side in sides:
                    got = load(side.port, request, args.seconds, args.clients)
                    latencies.setdefault((kind, side.name), []).extend(got)
                    elapsed[(kind, side.name)] = elapsed.get((kind, side.name), 0.0) + args.seconds
        made_and_kept = thumbnails(sides[-1])
    finally:
        for side in sides:
            stop(side)
        shutil.rmtree(root, ignore_errors=True)

    rows = []
    for kind in kinds:
        base = len(latencies[(kind, "today")]) / elapsed[(kind, "today")]
        for side in sides:
            got = latencies[(kind, side.name)]
            rate = len(got) / elapsed[(kind, side.name)]
            p50, p99 = _p50_p99(got)
            rows.append(
                {
                    "request": kind,
                    "side": side.name,
                    "requests": len(got),
                    "per_second": round(rate, 1),
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "vs_today": round(rate / base, 3),
                }
            )
    print(f"baseline {args.baseline}; {args.clients} clients, {args.rounds} rounds of {args.seconds:g} s per side")
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}\n")
    print("| request | server | requests/s | p50 ms | p99 ms | requests/s vs today |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['request']} | {row['side']} | {row['per_second']} | {row['p50_ms']} | {row['p99_ms']} "
            f"| {row['vs_today']:.3f} |"
        )
    thumbnail_rows = {kind: _p50_p99(seconds) for kind, seconds in made_and_kept.items()}
    print(f"\n| thumbnail_url of {args.images} images, one client | p50 ms | p99 ms |\n| --- | ---: | ---: |")
    for kind, (p50, p99) in thumbnail_rows.items():
        print(f"| {'first request: made and kept' if kind == 'made' else 'again: read'} | {p50} | {p99} |")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"baseline": args.baseline, "clients": args.clients, "rounds": args.rounds, "seconds": args.seconds}
    report |= {"load": load_before, "rows": rows, "thumbnails_ms": thumbnail_rows}
    (args.out / "bench_http.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out / 'bench_http.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
