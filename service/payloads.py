"""Request bodies and query strings to typed values, refusing bad shapes with a clear code.

Kept apart from the routes so every endpoint applies the same rules, and so the rules
can be read in one place.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from .errors import ApiError, Code

RESERVED_METADATA_KEYS = ("user", "encoding", "_id")
FORMAT_TYPES = ("base64", "url", "file")
MAX_TOP_K = 1000
MAX_LIST_LIMIT = 1000
MAX_IDS = 10_000
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def _bad(detail: str) -> ApiError:
    return ApiError(Code.BAD_REQUEST, detail)


def json_object(raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise _bad("the body must be a JSON object")
    return raw


def _integer(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} must be a whole number from {low} to {high}")
    return value


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, with or without a data: prefix, line breaks or padding."""
    text = _WHITESPACE.sub("", _DATA_URL.sub("", text.strip(), count=1))
    if not text:
        raise ApiError(Code.NO_CONTENT, "image.base64 is empty")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(Code.NO_CONTENT, "image.base64 is not valid base64") from exc


def image_bytes(body: dict, fetch: Callable[[str], bytes]) -> bytes:
    """The photo of ``{"image": {"base64": ...}}`` or ``{"image": {"url": ...}}`` as bytes.

    ``format_type``, when given, must name the form actually sent: a mismatch is code 6.
    """
    declared = body.get("format_type")
    if declared is not None and declared not in FORMAT_TYPES:
        raise ApiError(Code.BAD_FORMAT_TYPE, f"format_type must be one of {', '.join(FORMAT_TYPES)}")
    image = body.get("image")
    if image is None:
        raise ApiError(Code.NO_CONTENT, "the body has no image")
    if not isinstance(image, dict):
        raise _bad('image must be an object such as {"base64": "..."}')
    sent = [form for form in ("base64", "url") if form in image]
    if len(sent) > 1:
        raise ApiError(Code.BAD_FORMAT_TYPE, "send either image.base64 or image.url, not both")
    if declared is not None and sent and declared != sent[0]:
        raise ApiError(Code.BAD_FORMAT_TYPE, f"format_type is {declared!r} but the image was sent as {sent[0]}")
    if not sent:
        raise ApiError(Code.NO_CONTENT, "image.base64 is missing")
    value = image[sent[0]]
    if not isinstance(value, str):
        raise _bad(f"image.{sent[0]} must be a string")
    return decode_base64(value) if sent[0] == "base64" else fetch(value)


def metadata(value: Any, max_bytes: int) -> dict:
    """Optional metadata: a JSON object within the size limit, without reserved keys."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("metadata must be a JSON object")
    reserved = [key for key in RESERVED_METADATA_KEYS if key in value]
    if reserved:
        raise _bad(f"metadata may not use the reserved keys {', '.join(reserved)}")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > max_bytes:
        raise _bad(f"metadata is {size} bytes as JSON; at most {max_bytes} are allowed")
    return value


def image_metadata(body: dict, max_bytes: int) -> dict:
    """Metadata sent inside the image object (the documented form) or beside it."""
    image = body.get("image")
    inner = image.get("metadata") if isinstance(image, dict) else None
    return metadata(inner if inner is not None else body.get("metadata"), max_bytes)


def top_k(body: dict) -> int:
    return _integer(body.get("top_k", 10), "top_k", 1, MAX_TOP_K)


def threshold(body: dict) -> float | None:
    value = body.get("threshold")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
        raise _bad("threshold must be a number from -1 to 1 (cosine similarity)")
    return float(value)


def ids(body: dict) -> list[int]:
    value = body.get("ids")
    if not isinstance(value, list) or not value:
        raise _bad("ids must be a non-empty list of image ids")
    if len(value) > MAX_IDS:
        raise _bad(f"at most {MAX_IDS} ids per request")
    return [_integer(item, "every id", 1, 2**63 - 1) for item in value]


def page(args: dict[str, str]) -> tuple[int, int]:
    """offset and limit from the query string."""
    values = []
    for name, default, high in (("offset", 0, 2**63 - 1), ("limit", 50, MAX_LIST_LIMIT)):
        raw = args.get(name, str(default))
        if not re.fullmatch(r"\d{1,19}", raw.strip()):
            raise _bad(f"{name} must be a whole number")
        values.append(_integer(int(raw), name, 1 if name == "limit" else 0, high))
    return values[0], values[1]
