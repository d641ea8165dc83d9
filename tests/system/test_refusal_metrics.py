"""A real server tells quota refusals from rate-limit refusals in /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from service.harness.live import LiveServer
from tests.prometheus import samples, value


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data: Path = tmp_path_factory.mktemp("metrics")
    server = LiveServer(data, {"FACE_SEARCH_RATE_LIMIT": "1", "FACE_SEARCH_RATE_BURST": "2"}).start()
    yield server
    server.stop()


def test_quota_and_rate_limit_refusals_are_told_apart(live: LiveServer) -> None:
    def refusals() -> dict[str, float]:
        found = samples(requests.get(live.url + "/metrics", timeout=30).text)
        return {reason: value(found, "face_search_refusals_total", reason=reason) for reason in ("quota", "rate_limit")}

    live.new_key("limited", "limited-secret", quota=1)
    start = refusals()
    codes = [live.call("GET", "/images", "limited", "limited-secret").json()["status_code"] for _ in range(2)]
    codes += [live.call("GET", "/images").json()["status_code"] for _ in range(4)]  # burst 2, then 1 a second
    assert codes[:2] == [0, 4] and 4 in codes[2:], codes
    end = refusals()
    assert end["quota"] - start["quota"] == 1
    assert end["rate_limit"] - start["rate_limit"] == codes[2:].count(4)
