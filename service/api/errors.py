"""The API's numbered codes, one record each: its message, HTTP status, when it is answered,
and the errors answered with it.

Codes 0-6 are the documented Face Search API v2 table; 7 and up are this service's own.
Everything else about a code is derived from its record here: the answer to an error
(``answer_to``: the app's one error handler, the gunicorn worker's refusals), the OpenAPI
document's statuses and descriptions, and the codes table of docs/api.md (``codes_table``,
checked by tests/unit/test_docs.py). A new code is a member of ``Code`` and its record in
``RECORDS``; tests/unit/api/test_errors.py fails while one lacks the other, or while an
error a use case raises is answered by no record.

The use cases raise ``service.core.errors`` types; the HTTP layer's own refusals (a body
that is not JSON, a rate limit) are ``ApiError``s, and werkzeug's (an unknown route, a body
over the size limit) are its ``HTTPException``s, answered with their own HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound, RequestEntityTooLarge

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


@dataclass(frozen=True)
class CodeRecord:
    """One code: ``answers`` are the error types answered with it (a subclass follows its
    nearest listed base), ``statuses`` the HTTP status of those answered with another
    than ``http`` (a werkzeug ``HTTPException`` keeps its own), ``when`` the docs' words."""

    code: Code
    message: str
    http: int
    answers: tuple[type[Exception], ...] = ()
    statuses: Mapping[type[Exception], int] = field(default_factory=dict)
    when: str = ""

    def http_statuses(self) -> list[int]:
        """Every status this code is answered with, its own first."""
        return [self.http, *sorted(set(self.statuses.values()) - {self.http})]


RECORDS = (
    CodeRecord(Code.SUCCESS, "Success", 200),
    CodeRecord(Code.NO_CONTENT, "The photo does not contain content", 400, (core.NotAPhoto,),
               when="image or base64 missing or empty, invalid base64, bytes that are not a decodable "
               "JPEG/PNG/WebP/BMP/TIFF/GIF, a photo of more than `FACE_SEARCH_MAX_PIXELS`"),
    CodeRecord(Code.URL_UNAVAILABLE, "Url is unavailable", 400, (core.UrlUnavailable,),
               when="the image URL cannot be fetched, is refused by the address guard, is not an image, is too "
               "large or redirects too often"),
    CodeRecord(Code.NO_FACE, "Incorrect image format", 400, (core.NoFace,), when="no face found in the image"),
    CodeRecord(Code.OUT_OF_REQUESTS, "Out of requests", 429, (core.QuotaExceeded,),
               when="the key's request quota is used up, or its rate limit (then with `Retry-After`)"),
    CodeRecord(Code.BAD_CREDENTIALS, "Incorrect Api_key or api_secret", 401, (core.BadCredentials,),
               when="missing, unknown, wrong or revoked credentials"),
    # raised by the HTTP layer's own reading of a photo (service/api/requests.py)
    CodeRecord(Code.BAD_FORMAT_TYPE, "Incorrect format type", 400,
               when="unknown `format_type`, or one that differs from what was sent; the image sent two ways "
               "(base64 and url)"),
    # werkzeug's refusals other than those below keep their status (a body the server cannot read: 400)
    CodeRecord(Code.BAD_REQUEST, "Malformed request", 400, (core.InvalidRequest, HTTPException),
               when="body not JSON or not an object, wrong field types (booleans are not numbers), bad "
               "`offset`/`limit`/`top_k`/`threshold`/`ids`, metadata rules, a malformed photo link; a request the "
               "HTTP server cannot read (a malformed request line or header, `Content-Type` headers that disagree: "
               "400; a request line or header block over the server's limits: 414, 431)"),
    CodeRecord(Code.NOT_FOUND, "Image not found", 404, (core.ImageNotFound, core.PhotoMissing),
               when="unknown image id, or another key's; or the image's photo file is missing from the data "
               "directory (`GET /images/<id>/file`)"),
    CodeRecord(Code.TOO_LARGE, "Payload too large", 413, (RequestEntityTooLarge,),
               when="request body over `FACE_SEARCH_MAX_BODY_BYTES`"),
    CodeRecord(Code.PACK_MISMATCH, "Gallery embedded with another model pack", 409, (core.PackMismatch,),
               when="the gallery's faces come from another model pack than the one running"),
    CodeRecord(Code.NO_ROUTE, "No such endpoint", 404, (NotFound, MethodNotAllowed), {MethodNotAllowed: 405},
               when="unknown path (404) or method (405)"),
    CodeRecord(Code.STORAGE_ERROR, "Storage unavailable", 507, (core.StorageFull, core.StorageUnavailable),
               {core.StorageUnavailable: 503},
               when="507: the data directory cannot be written (disk full), nothing was stored; 503: storage "
               "cannot be reached or read right now (a stored photo that cannot be read; in cluster mode "
               "PostgreSQL or Milvus)"),
    # anything no other record answers is a bug
    CodeRecord(Code.INTERNAL, "Internal error", 500, (InternalServerError, Exception),
               when="a bug, logged with its traceback"),
    CodeRecord(Code.BAD_LINK, "Link expired or invalid", 403, (core.LinkRefused,),
               when="a signed photo link that expired, was altered, names another image, or was signed before the "
               "link secret was rotated (docs/vendor-api.md)"),
)  # fmt: skip
CODES: Mapping[Code, CodeRecord] = {record.code: record for record in RECORDS}
_ANSWERED = {kind: record for record in RECORDS for kind in record.answers}


def codes_table() -> str:
    """The table of codes as Markdown: code, message, HTTP status, when."""
    rows = [f"| {int(r.code)} | {r.message} | {r.http} | {r.when} |" for r in RECORDS]
    return "\n".join(["| code | message | HTTP | when |", "| ---: | --- | ---: | --- |", *rows])


class ApiError(Exception):
    """A refusal the client can act on: code, message, and the HTTP status that fits it."""

    def __init__(
        self, code: Code, detail: str | None = None, http_status: int | None = None, headers: dict | None = None
    ) -> None:
        self.code = code
        self.headers = headers or {}
        self.message = CODES[code].message if not detail else f"{CODES[code].message}: {detail}"
        self.http_status = http_status or CODES[code].http
        super().__init__(self.message)


def record_of(kind: type[BaseException]) -> CodeRecord:
    """The record answering errors of this type: its own, or its nearest listed base's."""
    return next(_ANSWERED[base] for base in kind.__mro__ if base in _ANSWERED)


def answer_to(error: Exception) -> ApiError:
    """The refusal answering ``error``: an ApiError as it is; a use case's error with its detail;
    werkzeug's with its description and status; anything else, a bug, with no detail."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, core.StorageDown):  # a read that met a component down (a write's is a ServiceError)
        error = core.StorageUnavailable(f"{error}; retry once it is back")
    record = record_of(type(error))
    if isinstance(error, HTTPException):
        allow = {"Allow": ", ".join(error.valid_methods or ())} if isinstance(error, MethodNotAllowed) else {}
        return ApiError(record.code, error.description, error.code, headers=allow)
    if record.code is Code.INTERNAL and not isinstance(error, core.ServiceError):
        return ApiError(Code.INTERNAL)
    status = next((record.statuses[base] for base in type(error).__mro__ if base in record.statuses), None)
    return ApiError(record.code, str(error), status)
