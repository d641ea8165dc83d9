"""The filter language of searches and listings, read from a request into ``index.filters``' tree.

The syntax is Pinecone's and Chroma's: ``{"status": "active", "year": {"$gte": 2021}}``, the
operators ``$eq $ne $in $nin $gt $gte $lt $lte $exists``, and ``$and`` / ``$or`` over lists of
such objects; several keys in one object must all hold. Nothing of it is ever evaluated as
code: it is read into pure data, and every refusal is an ``InvalidRequest`` whose message
names the problem and where it is (``filter.$and[1].year: $gte takes a number or a string,
not a boolean``). The limits are ``Limits``' (``FACE_SEARCH_MAX_FILTER_*``). What each
condition means is written once, in ``index.filters``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from index.catalog import MetadataIndex
from index.filters import (
    EQ,
    GT,
    GTE,
    IN,
    LT,
    LTE,
    NE,
    NIN,
    RESERVED,
    AllOf,
    AnyOf,
    Compare,
    Exists,
    Expr,
    Scope,
    paths,
)

from .config import FilterSettings, Limits
from .errors import InvalidRequest
from .metadata import depth

log = logging.getLogger(__name__)

MAX_PATH_BYTES = 120  # a key (its dotted path) as UTF-8: what the catalog's index keys have room for
OPERATORS = {"$eq": EQ, "$ne": NE, "$gt": GT, "$gte": GTE, "$lt": LT, "$lte": LTE, "$in": IN, "$nin": NIN}
LOGICAL = ("$and", "$or")
EXAMPLE = '{"status": "active", "year": {"$gte": 2021}}'


def _name(value: Any) -> str:
    """A JSON value's type as the messages say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _finite(value: Any, where: str) -> Any:
    """A JSON scalar as a filter holds it; numbers must be finite as 64-bit floats."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            if math.isfinite(float(value)):
                return value
        except OverflowError:
            pass
        raise InvalidRequest(f"{where}: {value!r} is not a finite number")
    return value


class _Reader:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.terms = 0

    def count(self, terms: int, where: str) -> None:
        self.terms += terms
        if self.terms > self.limits.max_filter_terms:
            raise InvalidRequest(
                f"{where}: the filter is too long: more than {self.limits.max_filter_terms} conditions and listed "
                "values (FACE_SEARCH_MAX_FILTER_TERMS)"
            )

    def block(self, value: Any, where: str, level: int) -> Expr:
        """An object of conditions (all of which must hold)."""
        if isinstance(value, list):
            raise InvalidRequest(f"{where}: a list where an object is needed (conditions go in an object: {EXAMPLE})")
        if not isinstance(value, dict):
            raise InvalidRequest(f"{where}: {_name(value)} where an object is needed (as in {EXAMPLE})")
        if not value:
            raise InvalidRequest(f"{where}: an empty object; give at least one condition")
        terms = []
        for key, inner in value.items():
            if key in LOGICAL:
                terms.append(self.logical(key, inner, f"{where}.{key}", level + 1))
            elif key.startswith("$"):
                raise InvalidRequest(f"{where}: unknown operator {key} (here: $and, $or, or a metadata key)")
            else:
                terms.append(self.condition(self.path(key, where), inner, f"{where}.{key}"))
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    def logical(self, key: str, value: Any, where: str, level: int) -> Expr:
        if level > self.limits.max_filter_depth:
            raise InvalidRequest(
                f"{where}: the filter is too deep: $and / $or nest at most {self.limits.max_filter_depth} levels "
                "(FACE_SEARCH_MAX_FILTER_DEPTH)"
            )
        if not isinstance(value, list):
            raise InvalidRequest(f"{where}: {key} takes a list of objects, not {_name(value)}")
        if not value:
            raise InvalidRequest(f"{where}: {key} takes a list of at least one object")
        terms = tuple(self.block(item, f"{where}[{n}]", level) for n, item in enumerate(value))
        return AllOf(terms) if key == "$and" else AnyOf(terms)

    def path(self, key: str, where: str) -> str:
        parts = key.split(".")
        if any(not part for part in parts):
            raise InvalidRequest(f"{where}: {key!r} is not a key: dots separate the names of nested keys")
        if any(part.startswith("$") for part in parts):
            raise InvalidRequest(f"{where}: {key!r}: a nested key may not start with $")
        if any(unicodedata.category(char) == "Cc" for char in key):
            raise InvalidRequest(f"{where}: {key!r}: a key may not hold control characters")
        if len(key.encode()) > MAX_PATH_BYTES:
            raise InvalidRequest(f"{where}: the key is longer than {MAX_PATH_BYTES} bytes as UTF-8")
        return key

    def condition(self, path: str, value: Any, where: str) -> Expr:
        if isinstance(value, list):
            raise InvalidRequest(
                f"{where}: a list where a value or an object of operators is needed (to match any of several "
                'values, use {"$in": [...]})'
            )
        if not isinstance(value, dict):
            self.count(1, where)
            return Compare(path, EQ, _finite(value, where))
        if not value:
            raise InvalidRequest(f"{where}: an empty object; give an operator such as $eq")
        terms: list[Expr] = []
        for op, operand in value.items():
            if not op.startswith("$"):
                raise InvalidRequest(
                    f"{where}: {op!r} is not an operator; nested keys are reached with a dotted key "
                    f"({path}.{op}), values are compared with $eq, $gt, ..."
                )
            terms.append(self.operator(path, op, operand, f"{where}.{op}"))
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    def operator(self, path: str, op: str, operand: Any, where: str) -> Expr:
        if op == "$exists":
            if not isinstance(operand, bool):
                raise InvalidRequest(f"{where}: $exists takes true or false, not {_name(operand)}")
            self.count(1, where)
            return Exists(path, operand)
        if op not in OPERATORS:
            known = ", ".join([*OPERATORS, "$exists"])
            raise InvalidRequest(f"{where}: unknown operator {op} (a condition takes {known})")
        code = OPERATORS[op]
        if code in (IN, NIN):
            if not isinstance(operand, list):
                raise InvalidRequest(f"{where}: {op} takes a list of values, not {_name(operand)}")
            self.count(max(1, len(operand)), where)
            for n, item in enumerate(operand):
                if isinstance(item, dict | list):
                    raise InvalidRequest(
                        f"{where}[{n}]: {op} lists strings, numbers, booleans or null, not {_name(item)}"
                    )
                _finite(item, f"{where}[{n}]")
            return Compare(path, code, tuple(operand))
        self.count(1, where)
        if code in (EQ, NE):
            if isinstance(operand, dict | list):
                raise InvalidRequest(f"{where}: {op} takes a string, number, boolean or null, not {_name(operand)}")
            return Compare(path, code, _finite(operand, where))
        if isinstance(operand, bool) or not isinstance(operand, int | float | str):
            raise InvalidRequest(f"{where}: {op} takes a number or a string, not {_name(operand)}")
        return Compare(path, code, _finite(operand, where))


def parse_filter(value: Any, limits: Limits, where: str = "filter") -> Expr:
    """A request's ``filter`` as a tree; InvalidRequest naming the problem otherwise."""
    if isinstance(value, list):
        raise InvalidRequest(f"{where}: a list where an object is needed (a filter is an object: {EXAMPLE})")
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: {_name(value)} where an object is needed (a filter is an object: {EXAMPLE})")
    # a nesting bound before the walk, which recurses: objects, lists and operators per $and level
    if depth(value) > 2 * limits.max_filter_depth + 3:
        raise InvalidRequest(
            f"{where}: the filter is too deep: $and / $or nest at most {limits.max_filter_depth} levels "
            "(FACE_SEARCH_MAX_FILTER_DEPTH)"
        )
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limits.max_filter_bytes:
        raise InvalidRequest(
            f"{where}: the filter is too long: {size} bytes as JSON, at most {limits.max_filter_bytes} "
            "(FACE_SEARCH_MAX_FILTER_BYTES)"
        )
    return _Reader(limits).block(value, where, 0)


def parse_filter_text(text: str, limits: Limits, where: str = "filter") -> Expr:
    """A filter sent as JSON text (a query string's ``filter=``)."""
    if len(text.encode()) > limits.max_filter_bytes * 4:  # before parsing; escapes may shrink it
        raise InvalidRequest(f"{where}: the filter is too long (FACE_SEARCH_MAX_FILTER_BYTES)")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidRequest(f"{where}: not valid JSON (send it URL-encoded, as in filter={EXAMPLE})") from None
    return parse_filter(value, limits, where)


def collection_name(value: Any, limits: Limits, where: str = "collection") -> str:
    """A collection's name: a non-blank string of at most ``max_collection_chars`` characters,
    without control characters."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: a collection is named by a string, not {_name(value)}")
    if not value.strip():
        raise InvalidRequest(f"{where}: a collection's name may not be empty or blank")
    if len(value) > limits.max_collection_chars:
        raise InvalidRequest(
            f"{where}: a collection's name has at most {limits.max_collection_chars} characters "
            "(FACE_SEARCH_MAX_COLLECTION_CHARS)"
        )
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise InvalidRequest(f"{where}: a collection's name may not hold control characters")
    return value


def collection_names(value: Any, limits: Limits, where: str = "collection") -> tuple[str, ...]:
    """One collection's name, or a non-empty list of them."""
    if isinstance(value, list):
        if not value:
            raise InvalidRequest(f"{where}: an empty list; name at least one collection")
        if len(value) > limits.max_filter_terms:
            raise InvalidRequest(
                f"{where}: at most {limits.max_filter_terms} collections (FACE_SEARCH_MAX_FILTER_TERMS)"
            )
        return tuple(dict.fromkeys(collection_name(item, limits, f"{where}[{n}]") for n, item in enumerate(value)))
    return (collection_name(value, limits, where),)


def moment(value: Any, where: str) -> float:
    """An ISO 8601 date or time as seconds since the epoch (UTC when it names no zone)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}: an ISO 8601 date or time is a string, not {_name(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(
            f"{where}: {value[:64]!r} is not an ISO 8601 date or time (such as 2024-05-01 or 2024-05-01T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def scope_of(request: Mapping[str, Any], limits: Limits) -> Scope:
    """The ``collection``, ``filter``, ``created_after`` and ``created_before`` of a request body
    or query (absent ones do not narrow; null is absent); a query string's filter is JSON text."""
    collections = request.get("collection")
    where = request.get("filter")
    after, before = request.get("created_after"), request.get("created_before")
    expr: Expr | None = None
    if isinstance(where, str):
        expr = parse_filter_text(where, limits)
    elif where is not None:
        expr = parse_filter(where, limits)
    scope = Scope(
        collections=collection_names(collections, limits) if collections is not None else None,
        where=expr,
        created_after=moment(after, "created_after") if after is not None else None,
        created_before=moment(before, "created_before") if before is not None else None,
    )
    return scope


class FilterKeys:
    """The metadata keys a gallery's filters use, indexed on first use, in the background.

    A filter on a key the gallery does not index yet is answered all the same, by reading the
    metadata of the images the rest of the scope leaves (``index.catalog.ImageTable.select``);
    meanwhile one thread of this process indexes the key over the gallery's images a batch at
    a time (``MetadataIndex.build``, resumable, so a key another process began, or left half
    done when it stopped, is taken up again). The keys of ``FilterSettings.keys``, and the
    collections and creation times of galleries stored before those were indexed, are
    indexed the same way from the start of a serving process (``index_galleries``).
    """

    def __init__(self, metadata: MetadataIndex, settings: FilterSettings) -> None:
        self.metadata, self.settings = metadata, settings
        self._queue: dict[tuple[int, str], None] = {}  # what this process builds, in order
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._thread: threading.Thread | None = None

    def used(self, gid: int, scope: Scope) -> None:
        """A scope is about to be resolved: index the keys it reads that the gallery does not."""
        if not scope.everything:
            self._want(gid, (*RESERVED, *paths(scope.where)))

    def index_galleries(self, galleries: Iterable[int]) -> None:
        """The reserved paths and the configured keys of every gallery (a serving process's start)."""
        for gid in galleries:
            self._want(gid, (*RESERVED, *self.settings.keys))

    def _want(self, gid: int, wanted: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(wanted))
        state = self.metadata.keys(gid)
        if any(path not in state for path in wanted):
            self.metadata.start(gid, [path for path in wanted if path not in state], self.settings.most)
            state = self.metadata.keys(gid)
        building = [path for path in wanted if state.get(path) is False]
        if building:
            with self._lock:
                for path in building:
                    self._queue.setdefault((gid, path))
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(target=self._run, name="filter-keys", daemon=True)
                    self._thread.start()
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                gid, path = next(iter(self._queue))
            try:
                done = self.metadata.build(gid, path, batches=1)
            except Exception:  # a storage error or a deleted gallery: tried again on next use
                log.exception("indexing %r of gallery %d failed", path, gid)
                done = True
            with self._lock:
                if done:
                    self._queue.pop((gid, path), None)
                    self._wake.notify_all()

    def wait(self, timeout: float = 60.0) -> bool:
        """Until nothing is being indexed by this process (for tests and scripts); False on timeout."""
        with self._lock:
            return self._wake.wait_for(lambda: not self._queue or self._stop, timeout)

    def close(self) -> None:
        """Stop between two batches; what is left goes on from there next time."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
