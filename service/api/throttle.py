"""Per-key request rate limits and per-address slow-down of failed logins.

They protect the CPU (a search costs tens of milliseconds, a secret check an scrypt run),
not an account. Their state is shared by every worker process of one server: a small LMDB
file under the data directory (``SharedState``), written without fsync because losing it in
a crash is harmless, so a key's limit is the same whether its requests land on one worker
or on several. The durable, per-key request quota is in the catalog (service/core/keys.py).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import lmdb

Change = Callable[[Any], tuple[Any, Any]]  # stored value (None if absent) -> (new value, result)


class State(Protocol):
    def update(self, key: str, change: Change) -> Any:
        """Apply ``change`` to the value under ``key`` atomically (a new value of None deletes
        it); returns the change's result."""
        ...


class MemoryState:
    """One process's state (tests with a fake clock, and anything run in a single process)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, key: str, change: Change) -> Any:
        with self._lock:
            value, result = change(self._values.get(key))
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value
            return result


class SharedState:
    """The state of every process that opens the same folder, in one LMDB environment.

    At most ``max_keys`` entries are kept: past that (a spray of client addresses), the
    oldest half of the login records is dropped, which only forgets failures.
    """

    def __init__(self, folder: Path, max_keys: int = 100_000) -> None:
        self.env = _environment(folder.resolve())
        self.max_keys = max_keys

    def update(self, key: str, change: Change) -> Any:
        with self.env.begin(write=True) as txn:
            raw = txn.get(key.encode())
            value, result = change(None if raw is None else json.loads(raw))
            if value is None:
                txn.delete(key.encode())
            else:
                txn.put(key.encode(), json.dumps(value).encode())
            if txn.stat()["entries"] > self.max_keys:
                self._forget_logins(txn)
            return result

    def _forget_logins(self, txn: lmdb.Transaction) -> None:
        cursor = txn.cursor()
        if cursor.set_range(FailedLogins.PREFIX.encode()):
            for _ in range(self.max_keys // 2):
                if not cursor.key().startswith(FailedLogins.PREFIX.encode()) or not cursor.delete():
                    break


@cache
def _environment(folder: Path) -> lmdb.Environment:
    """One handle per folder and process (LMDB refuses a second), kept for the process's life."""
    folder.mkdir(parents=True, exist_ok=True)
    return lmdb.open(str(folder), map_size=256 << 20, sync=False, metasync=False, max_readers=512)


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

    def __init__(
        self,
        state: State,
        free: int = 5,
        window: float = 300.0,
        max_delay: float = 2.0,
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
    def shared(cls, folder: Path, rate: float, burst: int) -> Throttles:
        """The throttles of one server, shared by its worker processes through ``folder``."""
        state = SharedState(folder)
        return cls(RateLimiter(rate, burst, state), FailedLogins(state))
