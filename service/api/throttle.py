"""Per-key request rate limits and per-address slow-down of failed logins.

Both live in the memory of the one serving process: they protect the CPU (a search costs
tens of milliseconds, a secret check an scrypt run), not an account, so losing their state
on a restart is harmless. The durable, per-key request quota is in the catalog
(service/core/keys.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one will."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(float(self.burst), now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate


class FailedLogins:
    """Counts failed logins per client address; past ``free`` failures in ``window`` seconds,
    each further attempt waits twice as long as the one before, up to ``max_delay`` seconds."""

    def __init__(self, free: int = 5, window: float = 300.0, max_delay: float = 2.0, clock=time.monotonic) -> None:
        self.free = free
        self.window = window
        self.max_delay = max_delay
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def delay(self, address: str) -> float:
        with self._lock:
            excess = len(self._recent(address, self.clock())) - self.free
        return 0.0 if excess < 0 else min(self.max_delay, 0.05 * math.pow(2, excess))

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address, self.clock()).append(self.clock())
            if len(self._failures) > 100_000:  # bound memory under a spray of addresses
                self._failures = {a: f for a, f in self._failures.items() if f}

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


@dataclass
class Throttles:
    rate: RateLimiter
    logins: FailedLogins
