"""The rules an image's metadata keeps, wherever it comes from (a request, a bulk import)."""

from __future__ import annotations

import json
from typing import Any

from .config import Limits
from .errors import InvalidRequest

RESERVED_KEYS = ("user", "encoding", "_id")


def depth(value: Any) -> int:
    """How deeply objects and lists nest (a flat object is 1), without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def checked_metadata(value: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """``value`` when it is within the size and nesting limits and uses no reserved key."""
    if depth(value) > limits.max_metadata_depth:
        raise InvalidRequest(f"metadata nests deeper than {limits.max_metadata_depth} levels")
    reserved = [key for key in RESERVED_KEYS if key in value]
    if reserved:
        raise InvalidRequest(f"metadata may not use the reserved keys {', '.join(reserved)}")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limits.max_metadata_bytes:
        raise InvalidRequest(f"metadata is {size} bytes as JSON; at most {limits.max_metadata_bytes} are allowed")
    return value
