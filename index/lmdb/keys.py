"""API keys and their request counts in LMDB."""

from __future__ import annotations

from collections.abc import Callable

import lmdb

from ..errors import KeyExistsError
from ..records import GalleryRecord, KeyRecord
from .attributes import Attributes
from .encoding import decode_key, encode
from .environment import Environment


class LmdbKeys:
    def __init__(self, env: Environment, attributes: Attributes) -> None:
        self.env, self.attributes = env, attributes

    def get(self, name: str) -> KeyRecord | None:
        raw = self.env.read(lambda txn: txn.get(name.encode(), db=self.env.db["keys"]))
        return decode_key(raw) if raw else None

    def create(self, name: str, secret_hash: str, quota: int | None, created_at: str) -> KeyRecord:
        def create(txn: lmdb.Transaction) -> KeyRecord:
            if txn.get(name.encode(), db=self.env.db["keys"]):
                raise KeyExistsError(name)
            gallery = self.env.next_id(txn, "next_gallery")
            record = KeyRecord(name, gallery, secret_hash, quota, False, created_at)
            txn.put(name.encode(), encode(record), db=self.env.db["keys"])
            self.env.put_gallery(txn, gallery, GalleryRecord(key=name))
            self.attributes.start_gallery(txn, gallery)
            return record

        return self.env.write(create)

    def update(self, name: str, change: Callable[[KeyRecord], None]) -> KeyRecord | None:
        def update(txn: lmdb.Transaction) -> KeyRecord | None:
            raw = txn.get(name.encode(), db=self.env.db["keys"])
            if raw is None:
                return None
            record = decode_key(raw)
            change(record)
            txn.put(name.encode(), encode(record), db=self.env.db["keys"])
            return record

        return self.env.write(update)

    def all(self) -> list[tuple[KeyRecord, int]]:
        def scan(txn: lmdb.Transaction) -> list[tuple[KeyRecord, int]]:
            usage = self.env.db["usage"]
            return [
                (decode_key(raw), int(txn.get(name, b"0", db=usage)))
                for name, raw in txn.cursor(db=self.env.db["keys"])
            ]

        return self.env.read(scan)

    def count_request(self, name: str, quota: int | None) -> bool:
        def count(txn: lmdb.Transaction) -> bool:
            used = int(txn.get(name.encode(), b"0", db=self.env.db["usage"]))
            if quota is not None and used >= quota:
                return False
            txn.put(name.encode(), str(used + 1).encode(), db=self.env.db["usage"])
            return True

        return self.env.write(count)

    def reset_usage(self, name: str) -> None:
        self.env.write(lambda txn: txn.delete(name.encode(), db=self.env.db["usage"]))
