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

from index.catalog import KeyTable
from index.errors import KeyExistsError
from index.records import KeyRecord

from .errors import BadCredentials, QuotaExceeded, UnknownKey, writing

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
    def __init__(self, keys: KeyTable) -> None:
        self.keys = keys
        self._verified: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    def create(self, name: str | None = None, secret: str | None = None, quota: int | None = None) -> NewKey:
        """Create a key, generating the name and secret that were not given."""
        name = name or secrets.token_hex(8)
        secret = secret or secrets.token_urlsafe(24)
        if not name.isprintable() or ":" in name or not 0 < len(name) <= 128:
            raise ValueError("a key name is 1-128 printable characters without ':'")
        try:
            record = self.keys.create(name, hash_secret(secret), quota, now())
        except KeyExistsError:
            raise ValueError(f"key {name!r} already exists") from None
        return NewKey(record, secret)

    def ensure(self, name: str, secret: str) -> None:
        """Make sure the key exists with this secret (used for automated deployments). Every
        worker of a starting server does this at once: the first creates the key, the others
        find it made."""
        record = self.keys.get(name)
        if record is None:
            try:
                self.keys.create(name, hash_secret(secret), None, now())
                return
            except KeyExistsError:
                record = self.keys.get(name)
        if record is None or not check_secret(secret, record.secret_hash) or record.revoked:
            hashed = hash_secret(secret)

            def restore(key: KeyRecord) -> None:
                key.secret_hash = hashed
                key.revoked = False

            self.keys.update(name, restore)

    def named(self, name: str, active: bool = True) -> KeyRecord:
        """The key of that name (and not revoked, if ``active``), for the scripts that take one."""
        record = self.keys.get(name)
        if record is None or (active and record.revoked):
            raise UnknownKey(f"no {'active ' if active else ''}key named {name!r}")
        return record

    def all(self) -> list[tuple[KeyRecord, int]]:
        """Every key with the number of requests it has made."""
        return self.keys.all()

    def revoke(self, name: str) -> bool:
        return self.keys.update(name, lambda key: setattr(key, "revoked", True)) is not None

    def set_quota(self, name: str, quota: int | None, reset_usage: bool = False) -> bool:
        found = self.keys.update(name, lambda key: setattr(key, "quota", quota)) is not None
        if found and reset_usage:
            self.keys.reset_usage(name)
        return found

    def authenticate(self, name: str | None, secret: str | None) -> KeyRecord:
        """The key's record if the pair is right and the key is not revoked."""
        record = self.keys.get(name) if name and secret is not None else None
        if record is None or secret is None or record.revoked or not self._verify(record, secret):
            raise BadCredentials()
        return record

    def charge(self, record: KeyRecord) -> None:
        """Count one request against the key's quota, refusing it once the quota is spent."""
        with writing():
            counted = self.keys.count_request(record.name, record.quota)
        if not counted:
            raise QuotaExceeded(f"the key's quota of {record.quota} requests is used up")

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
