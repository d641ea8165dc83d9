"""A real server writes one JSON line per log record."""

from __future__ import annotations

import json
from pathlib import Path

from service.harness.live import KEY, LiveServer
from service.harness.photos import b64, package_photo

PHOTO = b64(package_photo("Tom_Hanks_54745.png"))


def test_the_server_writes_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_LOG_LEVEL": "info"}, log=log).start()
    try:
        answer = server.call("POST", "/search", json={"image": {"base64": PHOTO}})
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == answer.headers["X-Request-ID"]]
    assert len(mine) == 1 and mine[0]["key"] == KEY and mine[0]["status"] == 200
    assert not [line for line in lines if line["logger"] == "gunicorn.access"], "one line per request, not two"
