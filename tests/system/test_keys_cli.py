"""scripts/keys.py against a data directory, and its effect on a running server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from service.harness.live import LiveServer
from tests.live import API, ROOT


def keys(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "scripts/keys.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def fields(output: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in output.strip().splitlines())


def test_create_generates_what_is_omitted_and_lists(tmp_path: Path) -> None:
    made = fields(keys(tmp_path, "create").stdout)
    assert len(made["key"]) >= 8 and len(made["secret"]) >= 24 and made["quota"] == "unlimited"
    named = keys(tmp_path, "create", "--key", "alice", "--secret", "pw", "--quota", "0")
    assert fields(named.stdout) == {"key": "alice", "secret": "pw", "quota": "0"}
    duplicate = keys(tmp_path, "create", "--key", "alice")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    listing = keys(tmp_path, "list").stdout
    assert "alice" in listing and made["key"] in listing
    assert "pw" not in listing and made["secret"] not in listing, "secrets are never shown again"
    assert keys(tmp_path, "revoke", "--key", "nobody").returncode == 1


def test_changes_reach_a_running_server_at_once(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "data").start()
    try:

        def status(key: str, secret: str) -> int:
            answer = requests.get(server.url + API + "/images", auth=(key, secret), timeout=30)
            return answer.json()["status_code"]

        assert status("bob", "pw") == 5
        keys(server.data_dir, "create", "--key", "bob", "--secret", "pw", "--quota", "1")
        assert status("bob", "pw") == 0
        assert status("bob", "pw") == 4
        keys(server.data_dir, "set-quota", "--key", "bob", "--unlimited")
        assert status("bob", "pw") == 0
        keys(server.data_dir, "set-quota", "--key", "bob", "--quota", "2", "--reset-usage")
        assert [status("bob", "pw") for _ in range(3)] == [0, 0, 4]
        keys(server.data_dir, "revoke", "--key", "bob")
        assert status("bob", "pw") == 5
        # the key the environment names is ensured at start-up
        assert status("test-key", "test-secret") == 0
    finally:
        server.stop()


def test_the_console_script_is_the_same_command(tmp_path: Path) -> None:
    """Installed as face-search-keys (service/commands/keys.py), scripts/keys.py runs the same."""
    env = {**os.environ, "FACE_SEARCH_DATA_DIR": str(tmp_path)}
    installed = str(Path(sys.executable).parent / "face-search-keys")
    made = subprocess.run([installed, "create", "--key", "carol"], env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and fields(made.stdout)["key"] == "carol", made.stderr
    assert "carol" in keys(tmp_path, "list").stdout
