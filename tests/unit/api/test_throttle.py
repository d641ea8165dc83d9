"""The per-key token bucket and the per-address slow-down of failed logins, on a fake clock."""

from __future__ import annotations

import pytest

from service.api.throttle import FailedLogins, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("k") == pytest.approx(0.5)
    assert limiter.acquire("other") == 0, "keys have separate buckets"
    clock.now += 0.5
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k") > 0
    assert RateLimiter(rate=0, burst=1).acquire("k") == 0, "rate 0 turns the limit off"


def test_failed_logins_slow_down_per_address_and_reset() -> None:
    clock = Clock()
    logins = FailedLogins(free=2, window=60, max_delay=1.0, clock=clock)
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
