"""A real gunicorn server on loopback, as ``make run`` starts it, restartable on its data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

import service.api
from face_search_client import FaceSearchClient
from models.runtime import REFERENCE
from service.api.paths import API
from service.core.config import Settings
from service.core.keys import KeyRing
from service.core.services import catalog_alone

KEY, SECRET = "test-key", "test-secret"  # the key every LiveServer ensures at start-up
# Every model on the reference runtime (ONNX Runtime fp32), for answers held equal to the last decimal to answers
# made on it (the packs' own choices, bf16 embedders, move scores in the fourth decimal)
REFERENCE_RUNTIME = {"FACE_SEARCH_MODEL_RUNTIME": str(REFERENCE)}
ROOT = Path(service.__file__).resolve().parents[1]  # where the service's packages are: the server's folder
CONFIG = Path(service.api.__file__).resolve().parent / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
            [*self.wrap, gunicorn, "-c", str(CONFIG), "service.api.wsgi:app"],
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

    def client(self, key: str = KEY, secret: str = SECRET) -> FaceSearchClient:
        """The Python client, signed in with a key of this server."""
        return FaceSearchClient(self.url, key, secret)

    def new_key(self, name: str | None = None, secret: str | None = None, quota: int | None = None) -> tuple[str, str]:
        """A key (so a gallery) of its own, made from another handle on the catalog while the
        server runs, as scripts/keys.py does; its name and secret."""
        with catalog_alone(Settings.from_env(self.env)) as catalog:
            made = KeyRing(catalog.keys).create(name, secret, quota)
        return made.record.name, made.secret
