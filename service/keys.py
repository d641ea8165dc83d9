"""API keys: creation, revocation, quotas, and checking a key and secret.

Secrets are stored as scrypt hashes with a per-key salt. scrypt is slow on purpose, far
too slow to run on every request, so a secret that verified once is remembered in
memory as a SHA-256 digest bound to the stored hash: a changed or revoked key misses
that cache and is checked again. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from index.records import KeyRecord
from index.store import Store

from .errors import ApiError, Code

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return "scrypt${n}${r}${p}$".format(**_SCRYPT) + "$".join(encoded)


def check_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    secret: str


class KeyRing:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def create(self, name: str | None = None, secret: str | None = None, quota: int | None = None) -> NewKey:
        """Create a key, generating the name and secret that were not given."""
        name = name or secrets.token_hex(8)
        secret = secret or secrets.token_urlsafe(24)
        if not name.isprintable() or ":" in name or not 0 < len(name) <= 128:
            raise ValueError("a key name is 1-128 printable characters without ':'")
        try:
            record = self.store.create_key(name, hash_secret(secret), quota, now())
        except KeyError:
            raise ValueError(f"key {name!r} already exists") from None
        return NewKey(record, secret)

    def ensure(self, name: str, secret: str) -> None:
        """Make sure the key exists with this secret (used for automated deployments)."""
        record = self.store.get_key(name)
        if record is None:
            self.create(name, secret)
        elif not check_secret(secret, record.secret_hash) or record.revoked:
            hashed = hash_secret(secret)

            def restore(key: KeyRecord) -> None:
                key.secret_hash = hashed
                key.revoked = False

            self.store.update_key(name, restore)

    def revoke(self, name: str) -> bool:
        return self.store.update_key(name, lambda key: setattr(key, "revoked", True)) is not None

    def set_quota(self, name: str, quota: int | None, reset_usage: bool = False) -> bool:
        found = self.store.update_key(name, lambda key: setattr(key, "quota", quota)) is not None
        if found and reset_usage:
            self.store.reset_usage(name)
        return found

    def authenticate(self, name: str | None, secret: str | None) -> KeyRecord:
        """The key's record if the pair is right and the key is not revoked."""
        record = self.store.get_key(name) if name and secret is not None else None
        if record is None or record.revoked or not self._verify(record, secret):
            raise ApiError(Code.BAD_CREDENTIALS)
        return record

    def charge(self, record: KeyRecord) -> None:
        """Count one request against the key's quota, refusing it once the quota is spent."""
        if not self.store.count_request(record.name, record.quota):
            raise ApiError(Code.OUT_OF_REQUESTS, f"the key's quota of {record.quota} requests is used up")

    def _verify(self, record: KeyRecord, secret: str) -> bool:
        digest = hashlib.sha256(record.secret_hash.encode() + b"\0" + secret.encode()).digest()
        with self._lock:
            cached = self._verified.get(record.name)
        if cached is not None and cached[0] == record.secret_hash:
            return hmac.compare_digest(cached[1], digest)
        if not check_secret(secret, record.secret_hash):
            return False
        with self._lock:
            self._verified[record.name] = (record.secret_hash, digest)
        return True
