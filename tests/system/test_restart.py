"""A real server restarted, gracefully or by SIGKILL, keeps everything it acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.harness.live import LiveServer
from service.harness.photos import b64, flipped, package_photo

TOM = "Tom_Hanks_54745.png"
T1 = "t1.jpg"


def _add(server: LiveServer, photo: bytes, metadata: dict) -> dict:
    answer = server.call("POST", "/images", json={"image": {"base64": b64(photo), "metadata": metadata}})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def _search_ids(server: LiveServer, photo: bytes) -> list[int]:
    answer = server.call("POST", "/search", json={"image": {"base64": b64(photo)}})
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in answer.json()["result"]]


def _listed(server: LiveServer) -> dict[int, dict]:
    return {item["id"]: item["metadata"] for item in server.call("GET", "/images").json()["result"]}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["graceful", "sigkill"])
def test_restart_keeps_everything(tmp_path: Path, how: str) -> None:
    server = LiveServer(tmp_path / "data").start()
    try:
        tom = _add(server, package_photo(TOM), {"who": "tom"})
        group = _add(server, package_photo(T1), {"who": "group"})
        gone = _add(server, flipped(package_photo(TOM)), {"who": "deleted"})
        assert server.call("DELETE", "/images", json={"ids": [gone["id"]]}).json()["deleted"] == 1
        server.call("PUT", f"/images/{group['id']}", json={"metadata": {"who": "group", "v": 2}})
        server.stop() if how == "graceful" else server.kill()
        server.start()
        assert _listed(server) == {tom["id"]: {"who": "tom"}, group["id"]: {"who": "group", "v": 2}}
        assert _search_ids(server, flipped(package_photo(TOM))) == [tom["id"]]
        assert server.call("GET", f"/images/{tom['id']}/file").content == package_photo(TOM)
        after = _add(server, package_photo("yaoming.jpg"), {"who": "yao"})
        assert after["id"] > gone["id"], "ids are never reused"
    finally:
        server.stop()
