"""The API's numbered error codes, and the one table that maps the use cases' errors to them.

Codes 0-6 are the documented Face Search API v2 table; 7 and up are this service's own.
The use cases raise ``service.core.errors`` types; the HTTP layer's own refusals (a body
that is not JSON, a rate limit, an unknown route) are ``ApiError``s. ``refusal`` turns
either into the code, message, HTTP status and headers of the answer.
"""

from __future__ import annotations

from enum import IntEnum

from ..core import errors as core


class Code(IntEnum):
    SUCCESS = 0
    NO_CONTENT = 1
    URL_UNAVAILABLE = 2
    NO_FACE = 3
    OUT_OF_REQUESTS = 4
    BAD_CREDENTIALS = 5
    BAD_FORMAT_TYPE = 6
    BAD_REQUEST = 7
    NOT_FOUND = 8
    TOO_LARGE = 9
    PACK_MISMATCH = 10
    NO_ROUTE = 11
    STORAGE_ERROR = 12
    INTERNAL = 13
    BAD_LINK = 14


MESSAGES = {
    Code.SUCCESS: "Success",
    Code.NO_CONTENT: "The photo does not contain content",
    Code.URL_UNAVAILABLE: "Url is unavailable",
    Code.NO_FACE: "Incorrect image format",
    Code.OUT_OF_REQUESTS: "Out of requests",
    Code.BAD_CREDENTIALS: "Incorrect Api_key or api_secret",
    Code.BAD_FORMAT_TYPE: "Incorrect format type",
    Code.BAD_REQUEST: "Malformed request",
    Code.NOT_FOUND: "Image not found",
    Code.TOO_LARGE: "Payload too large",
    Code.PACK_MISMATCH: "Gallery embedded with another model pack",
    Code.NO_ROUTE: "No such endpoint",
    Code.STORAGE_ERROR: "Storage unavailable",
    Code.INTERNAL: "Internal error",
    Code.BAD_LINK: "Link expired or invalid",
}

HTTP_STATUS = {
    Code.SUCCESS: 200,
    Code.NO_CONTENT: 400,
    Code.URL_UNAVAILABLE: 400,
    Code.NO_FACE: 400,
    Code.OUT_OF_REQUESTS: 429,
    Code.BAD_CREDENTIALS: 401,
    Code.BAD_FORMAT_TYPE: 400,
    Code.BAD_REQUEST: 400,
    Code.NOT_FOUND: 404,
    Code.TOO_LARGE: 413,
    Code.PACK_MISMATCH: 409,
    Code.NO_ROUTE: 404,
    Code.STORAGE_ERROR: 507,
    Code.INTERNAL: 500,
    Code.BAD_LINK: 403,
}


# When each code is answered: the last column of the codes table (``codes_table``), which the
# OpenAPI document and docs/api.md show.
WHEN = {
    Code.SUCCESS: "",
    Code.NO_CONTENT: "image or base64 missing or empty, invalid base64, bytes that are not a decodable "
    "JPEG/PNG/WebP/BMP/TIFF/GIF, a photo of more than `FACE_SEARCH_MAX_PIXELS`",
    Code.URL_UNAVAILABLE: "the image URL cannot be fetched, is refused by the address guard, is not an image, "
    "is too large or redirects too often",
    Code.NO_FACE: "no face found in the image",
    Code.OUT_OF_REQUESTS: "the key's request quota is used up, or its rate limit (then with `Retry-After`)",
    Code.BAD_CREDENTIALS: "missing, unknown, wrong or revoked credentials",
    Code.BAD_FORMAT_TYPE: "unknown `format_type`, or one that differs from what was sent; the image sent two ways "
    "(base64 and url)",
    Code.BAD_REQUEST: "body not JSON or not an object, wrong field types (booleans are not numbers), bad "
    "`offset`/`limit`/`top_k`/`threshold`/`ids`, metadata rules, a malformed photo link; a request the HTTP "
    "server cannot read (a malformed request line or header, `Content-Type` headers that disagree: 400; a request "
    "line or header block over the server's limits: 414, 431)",
    Code.NOT_FOUND: "unknown image id, or another key's; or the image's photo file is missing from the data "
    "directory (`GET /images/<id>/file`)",
    Code.TOO_LARGE: "request body over `FACE_SEARCH_MAX_BODY_BYTES`",
    Code.PACK_MISMATCH: "the gallery's faces come from another model pack than the one running",
    Code.NO_ROUTE: "unknown path (404) or method (405)",
    Code.STORAGE_ERROR: "507: the data directory cannot be written (disk full), nothing was stored; 503: storage "
    "cannot be reached or read right now (a stored photo that cannot be read; in cluster mode PostgreSQL or Milvus)",
    Code.INTERNAL: "a bug, logged with its traceback",
    Code.BAD_LINK: "a signed photo link that expired, was altered, names another image, or was signed before the "
    "link secret was rotated (docs/vendor-api.md)",
}


def codes_table() -> str:
    """The table of codes as Markdown: code, message, HTTP status, when."""
    rows = [f"| {int(c)} | {MESSAGES[c]} | {HTTP_STATUS[c]} | {WHEN[c]} |" for c in Code]
    return "\n".join(["| code | message | HTTP | when |", "| ---: | --- | ---: | --- |", *rows])


# Statuses a code is also answered with: 405 for a known path with another method; 503 when
# storage cannot be reached or read (507 is a write the disk could not take).
ALSO_HTTP = {Code.NO_ROUTE: 405, Code.STORAGE_ERROR: 503}


class ApiError(Exception):
    """A refusal the client can act on: code, message, and the HTTP status that fits it."""

    def __init__(
        self, code: Code, detail: str | None = None, http_status: int | None = None, headers: dict | None = None
    ) -> None:
        self.code = code
        self.headers = headers or {}
        self.message = MESSAGES[code] if not detail else f"{MESSAGES[code]}: {detail}"
        self.http_status = http_status or HTTP_STATUS[code]
        super().__init__(self.message)


# Every error a use case raises, with its code and, where it differs from the code's, HTTP status.
DOMAIN: dict[type[core.ServiceError], tuple[Code, int | None]] = {
    core.NotAPhoto: (Code.NO_CONTENT, None),
    core.UrlUnavailable: (Code.URL_UNAVAILABLE, None),
    core.NoFace: (Code.NO_FACE, None),
    core.QuotaExceeded: (Code.OUT_OF_REQUESTS, None),
    core.BadCredentials: (Code.BAD_CREDENTIALS, None),
    core.InvalidRequest: (Code.BAD_REQUEST, None),
    core.ImageNotFound: (Code.NOT_FOUND, None),
    core.PhotoMissing: (Code.NOT_FOUND, None),
    core.PackMismatch: (Code.PACK_MISMATCH, None),
    core.LinkRefused: (Code.BAD_LINK, None),
    core.StorageFull: (Code.STORAGE_ERROR, None),
    core.StorageUnavailable: (Code.STORAGE_ERROR, 503),
}


def refusal(error: core.ServiceError) -> ApiError:
    """The answer to a use case's error (a type missing from ``DOMAIN`` is a bug: code 13)."""
    code, status = DOMAIN.get(type(error), (Code.INTERNAL, None))
    return ApiError(code, str(error), status)
