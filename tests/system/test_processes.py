"""Several processes on one data directory, and what a client sees at the seams between them:
imports beside a server that restarts, quotas and rate limits across workers, oversized bodies,
images by URL behind the address guard, and /index right after a rebuild by another process."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from service.harness.live import LiveServer
from service.harness.photos import b64, package_photo
from tests import loopback
from tests.live import API, ROOT, basic
from tests.photos import shared_set

TOM = "Tom_Hanks_54745.png"


def _lfw_folder(root: Path, people: int) -> int:
    """Two LFW photos of each of ``people`` people under ``root``; how many photos."""
    chosen = sorted(p for p in (shared_set("lfw") / "images").iterdir() if len(list(p.glob("*.jpg"))) >= 2)
    for person in chosen[:people]:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:2]:
            shutil.copy(photo, root / person.name / photo.name)  # into tmp_path, not the repository
    return 2 * len(chosen[:people])


def _worker_peaks(server: LiveServer) -> dict[int, int]:
    """Each worker process's peak resident memory, KiB."""
    workers = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    peaks = {}
    for pid in map(int, workers):
        status = Path(f"/proc/{pid}/status").read_text()
        peaks[pid] = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return peaks


def _settled_peaks(server: LiveServer) -> dict[int, int]:
    """The workers' peaks once a second goes by without any of them growing: a worker still
    setting itself up (its models, its indexes) must not be taken for one holding a body."""
    peaks = _worker_peaks(server)
    for _ in range(30):
        time.sleep(1)
        again = _worker_peaks(server)
        if again == peaks:
            break
        peaks = again
    return peaks


@pytest.mark.slow
def test_an_import_beside_a_restarting_server_keeps_every_photo(tmp_path: Path) -> None:
    """A server starting while an import adds photos must not take their files for orphans."""
    photos = _lfw_folder(tmp_path / "photos", 60)
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_RATE_LIMIT": "0"}).start()
    name, secret = server.new_key("importer", "s")
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(server.data_dir)}
    command = [sys.executable, "scripts/import_folder.py", str(tmp_path / "photos"), "--key", name, "--batch", "4"]
    importer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    restarts = 0
    try:
        while importer.poll() is None and restarts < 4:
            time.sleep(1.5)
            server.kill()
            server.start()
            restarts += 1
        out = importer.communicate(timeout=600)[0].decode()
        assert importer.returncode == 0, out
        assert restarts >= 2, "the server restarted while the import ran"
        listed = server.call("GET", "/images?limit=1000", name, secret).json()
        assert listed["total"] >= photos - 4, out  # a few LFW photos hold no face the detector keeps
        files = [server.call("GET", f"/images/{item['id']}/file", name, secret) for item in listed["result"]]
        missing = [item["id"] for item, file in zip(listed["result"], files, strict=True) if file.status_code != 200]
        assert not missing, f"listed images without their photo file: {missing}"
    finally:
        if importer.poll() is None:
            importer.kill()
        server.stop()


def test_an_oversized_body_gets_the_413_envelope_from_any_client(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_MAX_BODY_BYTES": str(8 << 20)}).start()
    try:
        body = b'{"image": {"base64": "' + b"A" * (60 << 20) + b'"}}'
        headers = {"Content-Type": "application/json", **basic()}
        # Warm both workers on the same path with a body just over the limit first, so what a
        # loaded machine's slower start-up allocates late is not taken for the big body.
        small = b'{"image": {"base64": "' + b"A" * (9 << 20) + b'"}}'
        for _ in range(6):
            warm = requests.post(server.url + API + "/images", data=small, headers=headers, timeout=60)
            assert warm.status_code == 413
            assert server.call("GET", "/images").status_code == 200
        before = _settled_peaks(server)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("POST", API + "/images", body=body, headers=headers)  # the standard library's client
        answer = connection.getresponse()
        envelope = json.loads(answer.read())
        assert answer.status == 413 and envelope["status_code"] == 9 and envelope["result"] is None, envelope
        for _ in range(2):
            again = requests.post(server.url + API + "/images", data=body, headers=headers, timeout=60)
            assert again.status_code == 413 and again.json()["status_code"] == 9
        assert server.call("GET", "/images").status_code == 200, "the server still answers"
        grown = {pid: peak - before[pid] for pid, peak in _worker_peaks(server).items() if pid in before}
        assert grown and max(grown.values()) < 30 * 1024, f"a worker held the 60 MiB body: {grown} KiB"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_quota_raced_by_eight_clients_lets_exactly_its_requests_through(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_RATE_LIMIT": "0", "FACE_SEARCH_THREADS": "8"}).start()
    try:
        quota = 25
        name, secret = server.new_key("limited", "s", quota=quota)

        def one(_: int) -> int:
            return server.call("GET", "/images", name, secret).json()["status_code"]

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(80)))
        assert codes.count(0) == quota and codes.count(4) == 80 - quota, codes
    finally:
        server.stop()


@pytest.mark.slow
def test_a_request_refused_by_the_rate_limit_is_not_charged(tmp_path: Path) -> None:
    """The bucket is shared by the workers, and only what it lets through counts against the quota."""
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_RATE_LIMIT": "0.2", "FACE_SEARCH_RATE_BURST": "5"}).start()
    try:
        name, secret = server.new_key("bursty", "s", quota=1000)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.call("GET", "/images", name, secret), range(24)))
        codes = [answer.json()["status_code"] for answer in answers]
        assert codes.count(0) in (5, 6), codes  # the burst, across both workers (and a refill at most)
        assert all("Retry-After" in a.headers for a in answers if a.json()["status_code"] == 4)
        env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(server.data_dir)}
        listing = subprocess.run(
            [sys.executable, "scripts/keys.py", "list"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout
        used = next(line.split()[2] for line in listing.splitlines() if line.startswith("bursty "))
        assert int(used) == codes.count(0), listing
    finally:
        server.stop()


@pytest.fixture
def photo_server() -> tuple[str, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    tom = package_photo(TOM)

    def answer(path: str) -> loopback.Answer:
        if path == "/elsewhere":
            return 302, {"Location": "http://127.0.0.2:9/photo.png"}, b""
        return 200, {"Content-Type": "image/png"}, tom

    with loopback.serve(answer, seen) as url:
        yield url, seen


@pytest.mark.parametrize("path", ["/images", "/search"])
def test_a_loopback_url_is_refused_and_never_fetched(tmp_path: Path, photo_server, path: str) -> None:
    url, seen = photo_server
    server = LiveServer(tmp_path / "data").start()  # default settings: no network is allowed but the public one
    try:
        answer = server.call("POST", path, json={"image": {"url": url + "/tom.png"}}).json()
        assert answer["status_code"] == 2 and "non-public" in answer["message"], answer
        assert seen == [], "nothing was fetched"
    finally:
        server.stop()


def test_an_allowed_network_is_fetched_from_its_vetted_address_and_a_redirect_out_of_it_refused(
    tmp_path: Path, photo_server
) -> None:
    url, seen = photo_server
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_URL_ALLOW_NETWORKS": "127.0.0.1/32"}).start()
    try:
        added = server.call("POST", "/images", json={"image": {"url": url + "/tom.png"}}).json()
        assert added["status_code"] == 0, added
        assert seen == [("/tom.png", url.removeprefix("http://"))], "one request, to the address it vetted"
        refused = server.call("POST", "/search", json={"image": {"url": url + "/elsewhere"}}).json()
        assert refused["status_code"] == 2 and "127.0.0.2" in refused["message"], refused
        assert [path for path, _ in seen] == ["/tom.png", "/elsewhere"], "the redirect's target was not fetched"
    finally:
        server.stop()


@pytest.mark.slow
def test_index_shows_a_rebuild_by_another_process_as_soon_as_it_is_committed(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    try:
        for photo in (TOM, "t1.jpg"):
            assert server.call("POST", "/images", json={"image": {"base64": b64(package_photo(photo))}}).ok
        before = server.call("GET", "/index").json()["result"]
        env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(server.data_dir)}
        subprocess.run([sys.executable, "scripts/rebuild_index.py", "--all"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        for _ in range(4):  # whichever worker answers, with no search in between
            state = server.call("GET", "/index").json()["result"]
            assert state["committed_generation"] == before["generation"] + 1, state
            assert state["generation"] == state["committed_generation"] and state["adopted"], state
            assert state["last_rebuild"] is not None and state["vectors"] == before["vectors"]
    finally:
        server.stop()
