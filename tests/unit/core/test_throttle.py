"""The per-key token bucket and the per-address slow-down of failed logins, on a fake clock."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from index.lmdb.run_state import LmdbRunState
from service.core.throttle import FailedLogins, MemoryState, RateLimiter
from tests.live import ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "shared"])
def state(request: pytest.FixtureRequest, tmp_path: Path):
    return MemoryState() if request.param == "memory" else LmdbRunState(tmp_path / "throttle", FailedLogins.PREFIX)


def test_token_bucket_allows_bursts_then_the_rate(state) -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, state=state, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0, "keys have separate buckets"
    clock.now += 0.5
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") > 0
    assert RateLimiter(rate=0, burst=1, state=state).acquire("k") == 0, "rate 0 turns the limit off"


def test_failed_logins_slow_down_per_address_and_reset(state) -> None:
    clock = Clock()
    logins = FailedLogins(state, free=2, window=60, max_delay=1.0, clock=clock)
    delays = []
    for _ in range(8):
        delays.append(logins.delay("10.9.9.9"))
        logins.failed("10.9.9.9")
    assert delays[:2] == [0, 0] and delays[2:] == sorted(delays[2:]) and 0 < delays[2] < delays[4]
    assert delays[-1] == 1.0, "capped"
    assert logins.delay("10.8.8.8") == 0, "other addresses are not slowed"
    clock.now += 61
    assert logins.delay("10.9.9.9") == 0, "failures expire"
    logins.failed("10.9.9.9")
    logins.failed("10.9.9.9")
    logins.failed("10.9.9.9")
    logins.succeeded("10.9.9.9")
    assert logins.delay("10.9.9.9") == 0


def test_processes_sharing_the_folder_share_the_buckets(tmp_path: Path) -> None:
    """Another process stands for another worker of the same server."""
    folder = tmp_path / "throttle"
    here = RateLimiter(0.001, 3, LmdbRunState(folder, FailedLogins.PREFIX))
    assert [here.acquire("k"), here.acquire("k")] == [0, 0]
    program = (
        "import sys; from pathlib import Path; from index.lmdb.run_state import LmdbRunState\n"
        "from service.core.throttle import FailedLogins, RateLimiter\n"
        "there = RateLimiter(0.001, 3, LmdbRunState(Path(sys.argv[1]), FailedLogins.PREFIX))\n"
        "print(there.acquire('k') == 0, there.acquire('k') > 0, there.acquire('other') == 0)"
    )
    done = subprocess.run([sys.executable, "-c", program, str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr
    assert here.acquire("k") > 0, "the burst of 3 is spent across both processes"


def test_a_spray_of_addresses_is_forgotten_not_kept(tmp_path: Path) -> None:
    state = LmdbRunState(tmp_path / "throttle", FailedLogins.PREFIX, max_keys=50)
    logins = FailedLogins(state)
    for n in range(200):
        logins.failed(f"10.0.{n // 250}.{n % 250}")
    assert state.env.stat()["entries"] <= 51


def test_checking_an_address_with_no_failed_logins_does_not_wait_for_the_writers(tmp_path: Path) -> None:
    """Checking and clearing the failed logins of an address with none on record changes nothing,
    so it takes no write transaction: it goes through while another worker holds the shared
    state's writer lock (every request did that twice before its rate-limit write)."""
    state = LmdbRunState(tmp_path / "throttle", FailedLogins.PREFIX)
    logins = FailedLogins(state, clock=Clock())
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        with state.env.begin(write=True):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        assert logins.delay("10.1.1.1") == 0
        logins.succeeded("10.1.1.1")
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
        thread.join(10)
    logins.failed("10.1.1.1")  # a change is still written
    assert state.update(FailedLogins.PREFIX + "10.1.1.1", lambda failures: (failures, len(failures))) == 1
