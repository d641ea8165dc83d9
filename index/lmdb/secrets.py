"""The service's secrets, in the catalog's ``meta`` table beside its counters."""

from __future__ import annotations

import lmdb

from .environment import Environment

_PREFIX = b"secret:"


class LmdbSecrets:
    def __init__(self, env: Environment) -> None:
        self.env = env

    def get(self, name: str) -> bytes | None:
        return self.env.read(lambda txn: txn.get(_PREFIX + name.encode(), db=self.env.db["meta"]))

    def setdefault(self, name: str, value: bytes) -> bytes:
        def put(txn: lmdb.Transaction) -> bytes:
            stored = txn.get(_PREFIX + name.encode(), db=self.env.db["meta"])
            if stored is not None:
                return bytes(stored)
            txn.put(_PREFIX + name.encode(), value, db=self.env.db["meta"])
            return value

        return self.env.write(put)

    def replace(self, name: str, value: bytes) -> None:
        self.env.write(lambda txn: txn.put(_PREFIX + name.encode(), value, db=self.env.db["meta"]))
