"""Which images a search or a listing may answer: a collection, a filter over the metadata, a
creation-time window, as a pure-data tree that crosses the storage seam.

``service.core.filters`` builds the tree from a request (validated there, nothing in it is
ever run as code); every backend resolves it its own way (the catalogs with their metadata
indexes, Milvus as a boolean expression), and ``matches`` here is the one reference of what a
tree means, which the backends fall back to for what they have not indexed and which the
tests compare them with.

What a condition means, once (docs/filters.md says it to the users):

- A path is a metadata key; dots reach into nested objects (``customer.city``); a list met on
  the way is walked into (``people.name`` reaches the name of every object of a list).
- The values at a path are the scalars found there, a list's scalars each. A condition holds
  when *some* value satisfies it (``$eq``, ``$in``, ``$gt``...), and ``$ne`` / ``$nin`` are
  exactly "not ``$eq``" / "not ``$in``", so an image without the key passes them.
- Comparisons are typed by the operand: a number compares with stored numbers and with stored
  strings written as JSON numbers (``"2021"``, what some clients send), numerically, as 64-bit
  floats; a string compares with stored strings only, by Unicode code point; a boolean or null
  only equals itself. Infinite and NaN numbers are never matched.
- An image's collection and its creation time are reserved paths (``COLLECTION``, ``CREATED``),
  always indexed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_COLLECTION = "default"
COLLECTION = "$collection"  # the image's collection (a string)
CREATED = "$created"  # the image's creation time, as seconds since the epoch
RESERVED = (COLLECTION, CREATED)

EQ, NE, IN, NIN, GT, GTE, LT, LTE = "eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"
RANGES = (GT, GTE, LT, LTE)
NEGATED = {NE: EQ, NIN: IN}  # an operator that is the negation of another

# A string that JSON would read as a number: no sign but minus, no leading zeros, no spaces, no
# hex or "NaN". Such a string is also a number to a numeric operand ("2021" >= 2021).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUMBER_CHARS = 40


@dataclass(frozen=True)
class Compare:
    """Some value at ``path`` compares with ``value`` by ``op`` (for ``in``/``nin``, a tuple)."""

    path: str
    op: str
    value: Any


@dataclass(frozen=True)
class Exists:
    path: str
    present: bool


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Expr, ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Expr, ...]


Expr = Compare | Exists | AllOf | AnyOf


@dataclass(frozen=True)
class Scope:
    """What narrows a search or a listing: None everywhere is the whole gallery, as before
    collections and filters existed."""

    collections: tuple[str, ...] | None = None
    where: Expr | None = None
    created_after: float | None = None  # inclusive, seconds since the epoch
    created_before: float | None = None  # exclusive

    @property
    def everything(self) -> bool:
        return self.expr() is None

    def expr(self) -> Expr | None:
        """The whole scope as one tree over the reserved paths and the metadata (None: no limit)."""
        terms: list[Expr] = []
        if self.collections is not None:
            terms.append(Compare(COLLECTION, IN, tuple(self.collections)))
        if self.created_after is not None:
            terms.append(Compare(CREATED, GTE, self.created_after))
        if self.created_before is not None:
            terms.append(Compare(CREATED, LT, self.created_before))
        if self.where is not None:
            terms.append(self.where)
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))


EVERYTHING = Scope()


def paths(expr: Expr | None) -> set[str]:
    """Every path a tree reads."""
    found: set[str] = set()
    stack = [expr] if expr is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, AllOf | AnyOf):
            stack.extend(node.terms)
        else:
            found.add(node.path)
    return found


# -- the values at a path ----------------------------------------------------------------------


def _float(value: int | float) -> float | None:
    """A JSON number as a finite 64-bit float; None for one too large (or NaN, infinite)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def numeric_string(text: str) -> float | None:
    """The number a string writes the way JSON does, else None."""
    if len(text) > _NUMBER_CHARS or not _NUMBER.fullmatch(text):
        return None
    return _float(float(text))


def flat(value: Any) -> Iterator[Any]:
    """``value``, or the items of a list (of lists...), in order."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            yield item


def resolve(metadata: Mapping[str, Any], path: str) -> tuple[bool, list[Any]]:
    """Whether ``path`` is present in ``metadata``, and the values found there: lists met on
    the way or at the end are walked into; objects at the end count as present, not as values."""
    current: list[Any] = [metadata]
    for part in path.split("."):
        found = [item[part] for item in current if isinstance(item, dict) and part in item]
        if not found:
            return False, []
        current = [inner for item in found for inner in flat(item)]
    return True, [value for value in current if not isinstance(value, dict)]


def leaves(metadata: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, list[Any]]]:
    """Every path of ``metadata`` that leads somewhere (objects included, lists walked into),
    with its scalar values: what an index of every key holds. A key holding a dot cannot be
    reached by a dotted path, and is left out."""
    groups: dict[str, list[Any]] = {}
    stack: list[tuple[str, Any]] = [(prefix, metadata)]
    while stack:
        at, value = stack.pop()
        for item in flat(value):
            if isinstance(item, dict):
                for key, inner in item.items():
                    if "." in key or not key:
                        continue
                    path = f"{at}.{key}" if at else key
                    groups.setdefault(path, [])
                    stack.append((path, inner))
            elif at:
                groups[at].append(item)
    yield from groups.items()


# -- comparing ---------------------------------------------------------------------------------

NUMBER, STRING, BOOLEAN, NULL = "n", "s", "b", "z"


def kind(operand: Any) -> str:
    """How an operand compares: as a number, a string, a boolean or null."""
    if operand is None:
        return NULL
    if isinstance(operand, bool):
        return BOOLEAN
    if isinstance(operand, int | float):
        return NUMBER
    return STRING


def typed(value: Any) -> list[tuple[str, Any]]:
    """A stored scalar as what it compares as: a numeric string is a string and a number."""
    if value is None:
        return [(NULL, None)]
    if isinstance(value, bool):
        return [(BOOLEAN, value)]
    if isinstance(value, int | float):
        number = _float(value)
        return [(NUMBER, number)] if number is not None else []
    if isinstance(value, str):
        number = numeric_string(value)
        return [(STRING, value)] if number is None else [(STRING, value), (NUMBER, number)]
    return []


def satisfies(op: str, stored: Any, operand: Any) -> bool:
    """Whether one stored value of the operand's kind satisfies ``op operand``."""
    return _holds(op, stored, float(operand) if kind(operand) == NUMBER else operand)


def _holds(op: str, stored: Any, operand: Any) -> bool:
    if op == EQ:
        return bool(stored == operand)
    if op == GT:
        return bool(stored > operand)
    if op == GTE:
        return bool(stored >= operand)
    if op == LT:
        return bool(stored < operand)
    return bool(stored <= operand)


def compare(values: list[Any], op: str, operand: Any) -> bool:
    """Whether some value of ``values`` satisfies ``op operand`` (``$ne`` and ``$nin``: none
    satisfies their positive)."""
    if op in NEGATED:
        return not compare(values, NEGATED[op], operand)
    if op == IN:
        return any(compare(values, EQ, one) for one in operand)
    sort = kind(operand)
    return any(s == sort and satisfies(op, v, operand) for value in values for s, v in typed(value))


def created_seconds(created_at: str) -> float | None:
    """An image's ``created_at`` (ISO 8601) as seconds since the epoch; None when it is not one."""
    try:
        moment = datetime.fromisoformat(created_at)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Facts:
    """What a tree is evaluated against: one image's metadata, collection and creation time."""

    metadata: Mapping[str, Any]
    collection: str
    created: float | None

    def at(self, path: str) -> tuple[bool, list[Any]]:
        if path == COLLECTION:
            return True, [self.collection]
        if path == CREATED:
            return (True, [self.created]) if self.created is not None else (False, [])
        return resolve(self.metadata, path)


def matches(expr: Expr | None, facts: Facts) -> bool:
    """Whether an image passes the tree: the reference every backend must agree with."""
    if expr is None:
        return True
    if isinstance(expr, AllOf):
        return all(matches(term, facts) for term in expr.terms)
    if isinstance(expr, AnyOf):
        return any(matches(term, facts) for term in expr.terms)
    present, values = facts.at(expr.path)
    if isinstance(expr, Exists):
        return present == expr.present
    return compare(values, expr.op, expr.value)
