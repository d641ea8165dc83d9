"""Start or stop a local cluster's PostgreSQL and Milvus, from their PyPI packages, on loopback.

  python scripts/cluster_services.py start --dir DIR   # prints the FACE_SEARCH_* settings as export lines
  python scripts/cluster_services.py stop --dir DIR

Both servers keep their data under DIR and listen on 127.0.0.1 only, on ports chosen once
and kept in DIR/cluster.json with their pids, so a second ``start`` finds them running (or
starts them again on the same ports and data). The settings are also written to DIR/env.sh.
``stop`` kills both: Milvus hangs on a SIGTERM, and neither loses an acknowledged write to
a SIGKILL. As root, PostgreSQL runs as ``nobody``, so DIR must be a folder that user can reach.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..harness.engines import EngineError, Milvus, Postgres, kill

DATABASE = "face_search"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(root: Path) -> dict[str, str]:
    """Start what is not running; the settings of a replica of this cluster."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    state_file = root / "cluster.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    postgres = Postgres(root / "postgres", **state.get("postgres", {}))
    milvus = Milvus(root / "milvus", **state.get("milvus", {}))
    for server in (postgres, milvus):
        if not _alive(server.pid):
            server.pid = None
            server.start()
        state = {
            "postgres": {"port": postgres.port, "pid": postgres.pid},
            "milvus": {"ports": milvus.ports, "metrics_port": milvus.metrics_port, "pid": milvus.pid},
        }
        state_file.write_text(json.dumps(state))
    settings = {
        "FACE_SEARCH_CATALOG_URL": postgres.database(DATABASE),
        "FACE_SEARCH_MILVUS_URI": milvus.uri,
        "FACE_SEARCH_PHOTO_DIR": str((root / "photos").resolve()),
    }
    (root / "env.sh").write_text("".join(f"export {name}={value}\n" for name, value in settings.items()))
    return settings


def stop(root: Path) -> list[str]:
    state_file = root / "cluster.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    stopped = []
    for name in ("milvus", "postgres"):
        pid = state.get(name, {}).get("pid")
        if _alive(pid):
            kill(pid)
            stopped.append(f"{name} (pid {pid})")
        state.get(name, {})["pid"] = None
    state_file.write_text(json.dumps(state))
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--dir", type=Path, required=True, help="where both servers keep their data")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            for name, value in start(args.dir).items():
                print(f"export {name}={value}")
        else:
            stopped = stop(args.dir)
            print("stopped " + ", ".join(stopped) if stopped else "nothing was running", file=sys.stderr)
    except EngineError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
