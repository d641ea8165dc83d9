"""Per-key request rate limits and per-address slow-down of failed logins.

They protect the CPU (a search costs tens of milliseconds, a secret check an scrypt run),
not an account. Their state (``State``) is shared by every worker process of one server
(``index.backend.open_run_state``: not kept through a crash, where losing it is harmless),
so a key's limit is the same whether its requests land on one worker or on several. The
durable, per-key request quota is in the catalog (``keys``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from index.backend import open_run_state

R = TypeVar("R")
Change = Callable[[Any], tuple[Any, R]]  # stored value (None if absent) -> (new value, result)


class State(Protocol):
    def update(self, key: str, change: Change[R]) -> R:
        """Apply ``change`` to the value under ``key`` atomically (a new value of None deletes
        it); returns the change's result."""
        ...


class MemoryState:
    """One process's state (tests with a fake clock, and anything run in a single process)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, key: str, change: Change[R]) -> R:
        with self._lock:
            value, result = change(self._values.get(key))
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
            return result


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, state: State, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.state = state
        self.clock = clock  # CLOCK_MONOTONIC: one clock for every process of the machine

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one will."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()

        def take(bucket: list[float] | None) -> tuple[list[float], float]:
            tokens, updated = bucket if bucket is not None else (float(self.burst), now)
            tokens = min(self.burst, tokens + max(0.0, now - updated) * self.rate)
            if tokens >= 1:
                return [tokens - 1, now], 0.0
            return [tokens, now], (1 - tokens) / self.rate

        return self.state.update(f"rate:{key}", take)


class FailedLogins:
    """Counts failed logins per client address; past ``free`` failures in ``window`` seconds,
    each further attempt waits twice as long as the one before, up to ``max_delay`` seconds."""

    PREFIX = "login:"
    FREE = 5
    WINDOW_SECONDS = 300.0
    MAX_DELAY_SECONDS = 2.0

    def __init__(
        self,
        state: State,
        free: int = FREE,
        window: float = WINDOW_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.free = free
        self.window = window
        self.max_delay = max_delay
        self.clock = clock

    def _recent(self, failures: list[float] | None, now: float) -> list[float]:
        """The failures within the window, at most as many as can still lengthen the delay."""
        kept = [when for when in failures or [] if now - when <= self.window]
        return kept[-(self.free + 64) :]

    def delay(self, address: str) -> float:
        now = self.clock()

        def expire(failures: list[float] | None) -> tuple[list[float] | None, int]:
            recent = self._recent(failures, now)
            return recent or None, len(recent)

        excess = self.state.update(self.PREFIX + address, expire) - self.free
        return 0.0 if excess < 0 else min(self.max_delay, 0.05 * math.pow(2, excess))

    def failed(self, address: str) -> None:
        now = self.clock()
        self.state.update(self.PREFIX + address, lambda f: ([*self._recent(f, now), now], None))

    def succeeded(self, address: str) -> None:
        self.state.update(self.PREFIX + address, lambda f: (None, None))


@dataclass
class Throttles:
    rate: RateLimiter
    logins: FailedLogins

    @classmethod
    def shared(cls, folder: Path, rate: float, burst: int, free_logins: int) -> Throttles:
        """The throttles of one server, shared by its worker processes through ``folder``."""
        state = open_run_state(folder, forgettable=FailedLogins.PREFIX)
        return cls(RateLimiter(rate, burst, state), FailedLogins(state, free_logins))
