"""Constants the tests share, and a real gunicorn server on loopback to test against."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from index.lmdb import LmdbCatalog
from service.core.keys import KeyRing

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "test-key", "test-secret"
OTHER_KEY, OTHER_SECRET = "other-key", "other-secret"
API = "/api/v2/face_search"


# The names under which the vendor's docs give an answer's code and message, as deployed clients
# read them: spelt out here, not taken from the service, so that a name it gets wrong fails.
CODE_PAIRS = (("status_code", "message"), ("errorCode", "error_message"), ("invalidCode", "invalidMessage"))


def code_of(body: dict) -> int:
    """The answer's code, once every pair of names is seen to carry the same code and message."""
    carried = {(body[code], body[message]) for code, message in CODE_PAIRS}
    assert len(carried) == 1, f"the pairs of names disagree: {body}"
    return body["status_code"]


def basic(key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def raw_http(port: int, request: bytes, timeout: float = 60.0) -> RawAnswer:
    """Send ``request`` byte for byte (headers as a client library wrote them, malformed ones
    included) and read one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    return RawAnswer(int(lines[0].split()[1]), headers, body)


class LiveServer:
    """A real gunicorn process serving the app on loopback, restartable on the same data."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, log: Path | None = None, wrap: tuple[str, ...] = ()
    ) -> None:
        """``wrap``: a command the server runs under (a tracer)."""
        self.data_dir = data_dir
        self.log = log
        self.wrap = list(wrap)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "FACE_SEARCH_DATA_DIR": str(data_dir),
            "FACE_SEARCH_API_KEY": KEY,
            "FACE_SEARCH_API_SECRET": SECRET,
            "FACE_SEARCH_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """The running server's (gunicorn's master) process id."""
        assert self.process is not None, "the server is not started"
        return self.process.pid

    def start(self, timeout: float = 60.0) -> LiveServer:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        output = open(self.log, "ab") if self.log else None  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [*self.wrap, gunicorn, "-c", "service/api/gunicorn.conf.py", "service.api.wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                requests.get(self.url + API + "/images", timeout=5)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the master and its worker: a power cut as far as the data is concerned."""
        if self.process is not None:
            subprocess.run(["pkill", "-KILL", "-P", str(self.process.pid)], check=False)
            self.stop(signal.SIGKILL)

    def call(self, method: str, path: str, key: str = KEY, secret: str = SECRET, **kwargs) -> requests.Response:
        return requests.request(method, self.url + API + path, auth=(key, secret), timeout=60, **kwargs)

    def new_key(self, name: str | None = None, secret: str | None = None, quota: int | None = None) -> tuple[str, str]:
        """A key (so a gallery) of its own, made from another LMDB handle while the server
        runs, as scripts/keys.py does; its name and secret."""
        catalog = LmdbCatalog(self.data_dir / "lmdb")
        try:
            made = KeyRing(catalog.keys).create(name, secret, quota)
        finally:
            catalog.close()
        return made.record.name, made.secret
