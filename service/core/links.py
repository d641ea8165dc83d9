"""Signed photo links: a URL that serves one image's photo, or its thumbnail, without
credentials until it expires, so that a page can show it in an ``<img>`` tag.

A link names the gallery, the image, the rendition (the photo or its thumbnail) and the
second it expires; its signature is an HMAC-SHA256 of those four with the link secret.
That secret is the service's own, kept in the catalog (the data directory's LMDB, or the
cluster's PostgreSQL, which every replica reads), made on first use and never derived
from a key's secret, which is stored only as an scrypt hash. It is read on every use, so
a rotation (``scripts/keys.py rotate-link-secret``) refuses every earlier link at once, on
every process and replica. A link that is altered, names another image or rendition, or
was signed before a rotation fails the same comparison: an HMAC cannot tell these apart.

Expiry is rounded up to a twelfth of the lifetime, so the links of one image stay the same
for that long and a page shown again finds its photos in the browser's cache: a link works
for at least ``FACE_SEARCH_LINK_SECONDS`` and at most a twelfth longer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from secrets import token_bytes

from index.catalog import SecretTable

from .errors import LinkRefused

SECRET = "photo_links"  # the catalog's name for the link secret
SECRET_BYTES = 32


@dataclass(frozen=True)
class Link:
    gallery: int
    image_id: int
    rendition: str  # "file" (the photo as stored) or "thumbnail"
    expires: int  # Unix seconds

    def signed(self, secret: bytes) -> str:
        message = f"{self.rendition}:{self.gallery}:{self.image_id}:{self.expires}".encode()
        digest = hmac.digest(secret, message, hashlib.sha256)
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expiry(lifetime: int, now: float | None = None) -> int:
    """When a link made now expires: ``lifetime`` seconds on, rounded up to a twelfth of it."""
    step = max(1, lifetime // 12)
    return math.ceil(((time.time() if now is None else now) + lifetime) / step) * step


class Signer:
    """Signs the links of one answer: one secret, and every link expiring alike."""

    def __init__(self, secret: bytes, expires: int) -> None:
        self.secret, self.expires = secret, expires

    def sign(self, gallery: int, image_id: int, rendition: str) -> tuple[Link, str]:
        link = Link(gallery, image_id, rendition, self.expires)
        return link, link.signed(self.secret)


class PhotoLinks:
    """The links of the photos an answer names, and the check of a link a request carries."""

    def __init__(self, secrets: SecretTable, lifetime: int) -> None:
        self.secrets, self.lifetime = secrets, lifetime

    def _secret(self) -> bytes:
        """The link secret, made (once, whoever asks first) when there is none."""
        return self.secrets.get(SECRET) or self.secrets.setdefault(SECRET, token_bytes(SECRET_BYTES))

    def signer(self) -> Signer:
        return Signer(self._secret(), expiry(self.lifetime))

    def verify(self, link: Link, signature: str, now: float | None = None) -> None:
        """LinkRefused unless ``signature`` is the link's under the current secret and it has not expired."""
        stored = self.secrets.get(SECRET)
        if stored is None or not hmac.compare_digest(link.signed(stored).encode(), signature.encode()):
            raise LinkRefused(
                "the link's signature does not match: it was altered, names another image, or was made before the "
                "link secret was rotated; list or search again for a new link"
            )
        if (time.time() if now is None else now) >= link.expires:
            at = datetime.fromtimestamp(link.expires, UTC).isoformat()
            raise LinkRefused(f"the link expired at {at}; list or search again for a new link")

    def rotate(self) -> None:
        """A new link secret: every link signed before is refused from now on."""
        self.secrets.replace(SECRET, token_bytes(SECRET_BYTES))
