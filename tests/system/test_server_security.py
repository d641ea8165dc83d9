"""A real server's rate limit, login slow-down and logs: no secret and no photo ever logged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service.harness.live import SECRET, LiveServer
from service.harness.photos import b64, package_photo


@pytest.mark.slow
def test_rate_limit_and_login_slow_down_over_http(tmp_path: Path) -> None:
    env = {"FACE_SEARCH_RATE_LIMIT": "1", "FACE_SEARCH_RATE_BURST": "3", "FACE_SEARCH_FREE_LOGINS": "2"}
    server = LiveServer(tmp_path / "data", env).start()
    try:
        answers = [server.call("GET", "/images") for _ in range(4)]
        assert [a.json()["status_code"] for a in answers[:3]] == [0, 0, 0]
        assert answers[3].status_code == 429 and answers[3].json()["status_code"] == 4
        assert int(answers[3].headers["Retry-After"]) >= 1
        time.sleep(1.1)
        assert server.call("GET", "/images").json()["status_code"] == 0

        timings = []
        for _ in range(5):  # two free failures, then 50, 100 and 200 ms waits
            started = time.monotonic()
            assert server.call("GET", "/images", secret="wrong").json()["status_code"] == 5
            timings.append(time.monotonic() - started)
        assert timings[-1] >= 0.2 > timings[0] / 2, timings
    finally:
        server.stop()


@pytest.mark.slow
def test_logs_hold_no_secret_and_no_image(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = LiveServer(tmp_path / "data", {"FACE_SEARCH_LOG_LEVEL": "debug"}, log=log).start()
    photo = b64(package_photo("Tom_Hanks_54745.png"))
    try:
        server.call("POST", "/images", json={"image": {"base64": photo, "metadata": {"a": 1}}})
        server.call("POST", "/search", json={"image": {"base64": photo}})
        server.call("POST", "/search", json={"image": {"base64": photo[:-10] + "!!!"}})
        server.call("GET", "/images", secret="a-wrong-secret-xyz")
    finally:
        server.stop()
    text = log.read_text(errors="replace")
    assert "POST /api/v2/face_search/images" in text, "the access log was written"
    for secret in (SECRET, "a-wrong-secret-xyz"):
        assert secret not in text
    assert photo[100:160] not in text and photo[-200:-150] not in text
