"""Small state shared by the processes of one server: a little LMDB of its own under the data
directory's ``run/`` folder, written without fsync because losing it in a crash is harmless
(what the rate limits and the failed-login slow-down count: ``service.core.throttle``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import lmdb

R = TypeVar("R")
Change = Callable[[Any], tuple[Any, R]]  # stored value (None if absent) -> (new value, result)


class LmdbRunState:
    """The state of every process that opens the same folder, in one LMDB environment.

    At most ``max_keys`` entries are kept: past that (a spray of client addresses), the
    oldest half of the entries whose key starts with ``forgettable`` is dropped."""

    def __init__(self, folder: Path, forgettable: str, max_keys: int = 100_000) -> None:
        self.env = _environment(folder.resolve())
        self.max_keys = max_keys
        self.forgettable = forgettable.encode()

    def update(self, key: str, change: Change[R]) -> R:
        """Apply ``change`` to the value under ``key`` atomically (a new value of None deletes
        it); returns the change's result.

        A change that leaves the value as it is (a login check with no failures on record, a
        success with none to clear) is answered from a read transaction: the result is the one
        it would have had in a write at that moment, and every request then takes LMDB's
        writer lock, shared by all the workers, once (the rate limit) instead of three times."""
        with self.env.begin() as txn:
            raw = txn.get(key.encode())
        current = None if raw is None else json.loads(raw)
        value, result = change(current)
        if value == current:
            return result
        with self.env.begin(write=True) as txn:
            raw = txn.get(key.encode())
            value, result = change(None if raw is None else json.loads(raw))
            if value is None:
                txn.delete(key.encode())
            else:
                txn.put(key.encode(), json.dumps(value).encode())
            if txn.stat()["entries"] > self.max_keys:
                self._forget(txn)
            return result

    def _forget(self, txn: lmdb.Transaction) -> None:
        cursor = txn.cursor()
        if cursor.set_range(self.forgettable):
            for _ in range(self.max_keys // 2):
                if not cursor.key().startswith(self.forgettable) or not cursor.delete():
                    break


@cache
def _environment(folder: Path) -> lmdb.Environment:
    """One handle per folder and process (LMDB refuses a second), kept for the process's life."""
    folder.mkdir(parents=True, exist_ok=True)
    return lmdb.open(str(folder), map_size=256 << 20, sync=False, metasync=False, max_readers=512)
