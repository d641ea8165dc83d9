"""A soak test of a real server: everything that shares one data directory, at once, with kills.

  python scripts/soak.py [--minutes 10] [--clients 8] [--workers 2] [--kill-every 30] [--out reports/soak]

A gunicorn server (``--workers`` processes) on loopback serves ``--clients`` API clients
(face_search_client) that add, search, update and delete; beside them ``scripts/import_folder.py`` adds a folder of
LFW photos to another key and ``scripts/rebuild_index.py --all`` runs again and again; every
``--kill-every`` seconds a random worker is SIGKILLed (gunicorn starts another). Each client
keeps a ledger of what it was told. At the end the server is stopped and the data directory
is checked against the ledgers: the catalog, every photo file, and every gallery's index as
a restarted server loads it. Prints a table and writes ``<out>.json``:

- acknowledged: requests answered with success;
- lost: acknowledged adds or updates that are not in the catalog as acknowledged;
- resurrected: acknowledged deletes that are back, in the catalog or in a search begun after them;
- 5xx: answers with a server error status;
- p99 latency overall and of the requests begun within 5 s after a kill.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face_search_client import FaceSearchClient, FaceSearchError
from index.faiss import FaissIndexes
from index.lmdb import LmdbCatalog
from index.vectors import IndexSettings
from service.harness.live import LiveServer
from service.harness.photos import DATASETS, flipped, package_photo, scaled

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [
    package_photo("Tom_Hanks_54745.png"),
    flipped(package_photo("Tom_Hanks_54745.png")),
    package_photo("yaoming.jpg"),
    scaled(package_photo("yaoming.jpg"), 0.7),
    package_photo("t1.jpg"),
]
AFTER_KILL = 5.0  # seconds after a kill whose requests count as "during the kills"


@dataclass
class Ledger:
    """What one client was told, and what it cannot know (its requests cut off by a kill)."""

    key: tuple[str, str]
    live: dict[int, dict] = field(default_factory=dict)  # image id -> metadata last acknowledged
    deleted: dict[int, float] = field(default_factory=dict)  # image id -> when its delete was acknowledged
    doubtful: set[int] = field(default_factory=set)  # an update or delete cut off: either state is right
    searches: list[tuple[float, set[int]]] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (started, seconds)
    acknowledged: int = 0
    server_errors: int = 0
    cut_off: int = 0


def _client(url: str, ledger: Ledger, seed: int, deadline: float) -> None:
    rng = random.Random(seed)
    client = FaceSearchClient(url, *ledger.key, timeout=60)
    while time.monotonic() < deadline:
        action = rng.choice(["add", "add", "search", "search", "update", "delete"])
        mine = sorted(set(ledger.live) - ledger.doubtful)
        if action in ("update", "delete") and not mine:
            action = "add"
        image_id = rng.choice(mine) if action in ("update", "delete") else 0
        started = time.monotonic()
        try:
            if action == "add":
                metadata = {"client": seed, "v": 0}
                ledger.live[client.add_image(rng.choice(PHOTOS), metadata).id] = metadata
            elif action == "search":
                hits = client.search(rng.choice(PHOTOS), top_k=1000, threshold=-1)
                ledger.searches.append((started, {hit.id for hit in hits}))
            elif action == "update":
                metadata = {"client": seed, "v": ledger.live[image_id]["v"] + 1}
                client.update_metadata(image_id, metadata)
                ledger.live[image_id] = metadata
            else:
                client.delete_images([image_id])
                del ledger.live[image_id]
                ledger.deleted[image_id] = time.monotonic()
            ledger.acknowledged += 1
        except FaceSearchError as refused:
            if not refused.http_status:  # no answer: the worker was killed under this request
                ledger.cut_off += 1
                if action in ("update", "delete"):
                    ledger.doubtful.add(image_id)
                continue
            ledger.server_errors += refused.http_status >= 500
        ledger.latencies.append((started, time.monotonic() - started))


def _workers(server: LiveServer) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def _photo_folder(root: Path, people: int) -> Path:
    """Two LFW photos of each of ``people`` people, copied into a scratch folder (never into the repository)."""
    chosen = sorted(p for p in (DATASETS / "lfw" / "images").iterdir() if len(list(p.glob("*.jpg"))) >= 2)
    for person in chosen[:people]:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            shutil.copy(photo, root / person.name / photo.name)
    return root


def _check(data_dir: Path, ledgers: list[Ledger], keys: dict[str, str]) -> dict:
    """The stopped server's data directory against the ledgers."""
    catalog = LmdbCatalog(data_dir / "lmdb")
    try:
        lost = resurrected = 0

        def gallery_of(name: str) -> int:
            record = catalog.keys.get(name)
            assert record is not None, f"the soak made key {name}"
            return record.gallery

        for ledger in ledgers:
            gid = gallery_of(ledger.key[0])
            stored = {record.id: record for record in catalog.images.page(gid, 0, 1_000_000)[0]}
            for image_id, metadata in ledger.live.items():
                if image_id not in ledger.doubtful and (
                    image_id not in stored or stored[image_id].metadata != metadata
                ):
                    lost += 1
            resurrected += sum(1 for i in ledger.deleted if i in stored and i not in ledger.doubtful)
            for started, found in ledger.searches:
                resurrected += sum(1 for i, when in ledger.deleted.items() if when < started and i in found)
        files = catalog.images.files()
        on_disk = {p.relative_to(data_dir / "photos").as_posix() for p in (data_dir / "photos").glob("*/*")}
        indexes = FaissIndexes(catalog, data_dir / "indexes", IndexSettings())
        verified = {name: indexes.verify(gallery_of(name)) for name in keys}
        imported = catalog.images.gallery(gallery_of("importer")).images
    finally:
        catalog.close()
    return {
        "imported_photos": imported,
        "lost": lost,
        "resurrected": resurrected,
        "records_without_photo": len(files - on_disk),
        "orphan_photos": len(on_disk - files),
        "indexes_agree": verified,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=30.0)
    parser.add_argument("--import-people", type=int, default=400, help="LFW people (two photos each) to import")
    parser.add_argument("--out", default=str(ROOT / "reports" / "soak"))
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="soak-"))
    data_dir = scratch / "data"
    env = {"FACE_SEARCH_WORKERS": str(args.workers), "FACE_SEARCH_RATE_LIMIT": "0", "FACE_SEARCH_THREADS": "8"}
    env["FACE_SEARCH_INDEX_SAVE_SECONDS"] = "10"
    server = LiveServer(data_dir, env, log=scratch / "server.log").start(timeout=120)
    keys = {f"soak-{n}": f"secret-{n}" for n in range(2)} | {"importer": "secret-import"}
    for name, secret in keys.items():
        server.new_key(name, secret)
    ledgers = [Ledger((f"soak-{n % 2}", f"secret-{n % 2}")) for n in range(args.clients)]
    script_env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data_dir)}
    folder = _photo_folder(scratch / "photos", args.import_people)
    importer = subprocess.Popen(
        [sys.executable, "scripts/import_folder.py", str(folder), "--key", "importer", "--batch", "8"],
        cwd=ROOT, env=script_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started = time.monotonic()
    deadline = started + args.minutes * 60
    threads = [
        threading.Thread(target=_client, args=(server.url, ledger, n, deadline)) for n, ledger in enumerate(ledgers)
    ]
    for thread in threads:
        thread.start()
    kills, rebuilds, rng = [], 0, random.Random(0)
    rebuild: subprocess.Popen | None = None
    next_kill = started + args.kill_every
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if rebuild is None or rebuild.poll() is not None:
                rebuild = subprocess.Popen(
                    [sys.executable, "scripts/rebuild_index.py", "--all"],
                    cwd=ROOT, env=script_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                rebuilds += 1
            if time.monotonic() >= next_kill and (workers := _workers(server)):
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills.append(time.monotonic())
                next_kill += args.kill_every
                print(f"{time.monotonic() - started:6.0f}s  killed a worker ({len(kills)} so far)", flush=True)
        for thread in threads:
            thread.join(120)
    finally:
        for process in (importer, rebuild):
            if process is None or process.poll() is not None:
                continue
            if process is importer:
                process.kill()
            else:
                process.wait(timeout=600)
        server.stop()
    checked = _check(data_dir, ledgers, keys)
    latencies = [(s, d) for ledger in ledgers for s, d in ledger.latencies]
    during = [d for s, d in latencies if any(k <= s < k + AFTER_KILL for k in kills)]
    report = {
        "minutes": args.minutes,
        "clients": args.clients,
        "workers": args.workers,
        "kills": len(kills),
        "rebuild_runs": rebuilds,
        "acknowledged": sum(ledger.acknowledged for ledger in ledgers),
        "cut_off_by_kills": sum(ledger.cut_off for ledger in ledgers),
        "server_errors_5xx": sum(ledger.server_errors for ledger in ledgers),
        "p50_ms": round(float(np.percentile([d for _, d in latencies], 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile([d for _, d in latencies], 99)) * 1000, 1),
        "p99_during_kills_ms": round(float(np.percentile(during, 99)) * 1000, 1) if during else None,
        **checked,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(report, indent=1))
    width = max(len(name) for name in report)
    for name, value in report.items():
        print(f"{name:<{width}}  {value}")
    shutil.rmtree(scratch, ignore_errors=True)
    failed = report["lost"] or report["resurrected"] or report["server_errors_5xx"] or report["records_without_photo"]
    return 1 if failed or not all(checked["indexes_agree"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
