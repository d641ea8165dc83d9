"""The evaluation harness measures the same through a running server as in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.harness.live import KEY, SECRET, LiveServer
from tests.unit.scripts.test_evaluation import assert_identification_floors, run


@pytest.mark.slow
def test_harness_measures_the_same_through_http(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "live").start()
    try:
        report = run(tmp_path, "--url", server.url, "--key", KEY, "--secret", SECRET)
        listed = server.call("GET", "/images").json()
    finally:
        server.stop()
    assert report["via"] == "http"
    assert_identification_floors(report["identification"])
    assert listed["total"] == 0  # the harness removes what it added
