"""Scopes as Milvus boolean expressions, over what each face's row holds beside its vector.

A row holds its image's collection (a VARCHAR field), its creation time as seconds (``created``,
a DOUBLE, NaN when ``created_at`` is not a time: NaN compares false both ways, as an image
without a time passes no window), and the image's metadata twice over:

- **typed fields for the keys the collection's ``Layout`` names** (the gallery-wide filter keys,
  ``FACE_SEARCH_FILTER_KEYS``, at most ``TYPED_FILTER_KEYS``), five per key ``k<i>``: ``k<i>v``, an
  ARRAY of tags, one per value at the path (``s`` + a string, ``n`` + a number's ``repr``, ``z``
  null, ``t`` / ``f`` a boolean) and ``e`` when the path is present; ``k<i>l`` / ``k<i>g`` the
  least and greatest number (NaN: none); ``k<i>m`` / ``k<i>x`` the least and greatest tagged
  string (``t`` / the empty string when none, which every bound on an ``s`` string is below /
  above). Milvus evaluates these columns ten times faster than a JSON field (the cluster report).
  A row whose values at a key do not fit (more than ``TYPED_VALUES`` tags, a string longer than
  ``TYPED_BYTES`` or not UTF-8) holds only ``e`` and ``o`` there, and passes every scope reading
  that key: the catalog's check of every hit (``service.core.search.admitted_faces``) decides.
- **a JSON field ``meta``** for every other key: for every path of the metadata (every key at
  every level, lists walked into, as ``index.filters.leaves``), named by a hash of the path so
  that no key of a client's ever reaches the expression text, ``e<h>``: true, the path is
  present; ``n<h>``: its numbers (numbers, and strings written as numbers) as a list of floats,
  with ``l<h>`` / ``g<h>`` their least and greatest; ``s<h>``, ``m<h>``, ``x<h>`` the same for its
  strings; ``b<h>`` its booleans; ``z<h>``: true when it holds a null; and ``t``, the creation
  time (absent when ``created_at`` is not a time).

Then every condition of ``index.filters`` is one exact expression: some value equals
(``array_contains``, ``json_contains``), some value is above a bound (the greatest is), below it
(the least is), ``$ne`` / ``$nin`` / ``$exists: false`` are ``not`` of the positive (Milvus's
``not`` of a missing JSON key is true, as ``index.filters`` wants). Numbers are written as float
literals (a list of floats holds no integer ``5``), strings as literals with every character
outside printable ASCII escaped, which Milvus's parser (Go's) reads back exactly.

All of a gallery's rows are in its partition (the partition key), so Milvus evaluates the
expression over that gallery's rows only; no scalar field has an index in Milvus 2.3: the cost
is a pass over the gallery's rows, of the columns the scope reads, and of the whole JSON of each
row for a key that is not typed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..filters import (
    COLLECTION,
    CREATED,
    EQ,
    GT,
    GTE,
    IN,
    LT,
    LTE,
    NEGATED,
    NULL,
    NUMBER,
    RESERVED,
    STRING,
    AllOf,
    AnyOf,
    Compare,
    Exists,
    Expr,
    Scope,
    created_seconds,
    kind,
    leaves,
    paths,
    resolve,
    typed,
)
from ..vectors import TYPED_FILTER_KEYS

NOTHING = "(id < 0)"  # an expression no row passes (ids are positive)
_OPS = {EQ: "==", GT: ">", GTE: ">=", LT: "<", LTE: "<="}

TYPED_VALUES = 64  # tags one typed key holds in a row (the ARRAY's capacity)
TYPED_BYTES = 4096  # bytes of a string one typed key holds (a tag's and a VARCHAR's length, its tag aside)
PRESENT, NULL_TAG, TRUE_TAG, FALSE_TAG, OVERFLOW = "e", "z", "t", "f", "o"
NO_LEAST, NO_GREATEST = "t", ""  # a typed key's least / greatest tagged string when it holds none
TAGS, NUMBER_FIELD, STRING_FIELD = "tags", "number", "string"  # the kinds of a typed key's fields


def tag(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def projection(metadata: dict[str, Any], created_at: str, typed_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The ``meta`` JSON of a row (the typed keys left out: their fields hold them): see the module."""
    meta: dict[str, Any] = {}
    skipped = set(typed_keys)
    for path, values in leaves(metadata):
        if path in skipped:
            continue
        h = tag(path)
        meta[f"e{h}"] = True
        numbers, strings, booleans = set(), set(), set()
        for value in values:
            for sort, v in typed(value):
                if sort == NUMBER:
                    numbers.add(v)
                elif sort == STRING:
                    strings.add(v)
                elif sort == NULL:
                    meta[f"z{h}"] = True
                else:
                    booleans.add(v)
        if numbers:
            meta[f"n{h}"], meta[f"l{h}"], meta[f"g{h}"] = sorted(numbers), min(numbers), max(numbers)
        if strings:
            meta[f"s{h}"], meta[f"m{h}"], meta[f"x{h}"] = sorted(strings), min(strings), max(strings)
        if booleans:
            meta[f"b{h}"] = sorted(booleans)
    seconds = created_seconds(created_at)
    if seconds is not None:
        meta["t"] = seconds
    return meta


def literal(value: Any) -> str:
    """A number, string or boolean as Milvus expression text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return repr(number)
    out = []
    for char in str(value):
        code = ord(char)
        if 0x20 <= code < 0x7F and char not in '"\\':
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def value_tag(sort: str, value: Any) -> str:
    """What a typed key's ARRAY holds for one typed value (``index.filters.typed``)."""
    if sort == NUMBER:
        return "n" + repr(float(value) + 0.0)  # + 0.0: -0.0 equals 0.0, and must be tagged alike
    if sort == STRING:
        return "s" + value
    if sort == NULL:
        return NULL_TAG
    return TRUE_TAG if value else FALSE_TAG


def _fits(text: str) -> bool:
    try:
        return len(text.encode()) <= TYPED_BYTES + 1
    except UnicodeEncodeError:  # a lone surrogate: no VARCHAR holds it
        return False


def typed_values(metadata: dict[str, Any], path: str) -> tuple[list[str], list[float], list[str]]:
    """A row's tags, numbers and tagged strings at a typed key (see the module)."""
    present, values = resolve(metadata, path)
    if not present:
        return [], [], []
    tags, numbers, strings = {PRESENT}, set(), set()
    for value in values:
        for sort, typed_value in typed(value):
            tags.add(value_tag(sort, typed_value))
            if sort == NUMBER:
                numbers.add(typed_value)
            elif sort == STRING:
                strings.add(value_tag(sort, typed_value))
    if len(tags) > TYPED_VALUES or not all(_fits(one) for one in tags):
        return [PRESENT, OVERFLOW], [], []
    return sorted(tags), sorted(numbers), sorted(strings)


@dataclass(frozen=True)
class Layout:
    """The metadata keys a collection's rows hold as typed fields, in their order (``k0`` ...):
    fixed when the collection is made, and named in its name (``suffix``)."""

    keys: tuple[str, ...] = ()
    slots: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", {key: n for n, key in enumerate(self.keys)})

    @classmethod
    def of(cls, keys: Iterable[str]) -> Layout:
        """The first ``TYPED_FILTER_KEYS`` of the metadata keys ``keys`` (reserved paths are fields already)."""
        return cls(tuple(key for key in dict.fromkeys(keys) if key not in RESERVED)[:TYPED_FILTER_KEYS])

    @property
    def suffix(self) -> str:
        """What tells this layout's collections from those of another (none: no typed key)."""
        return "_" + hashlib.sha1(json.dumps(self.keys).encode()).hexdigest()[:8] if self.keys else ""

    def fields(self) -> list[tuple[str, str]]:
        """The typed keys' fields, as (name, kind)."""
        kinds = {"v": TAGS, "l": NUMBER_FIELD, "g": NUMBER_FIELD, "m": STRING_FIELD, "x": STRING_FIELD}
        return [(f"k{n}{part}", sort) for n in range(len(self.keys)) for part, sort in kinds.items()]

    def row(self, metadata: dict[str, Any], created_at: str) -> dict[str, Any]:
        """A row's scalar fields for scopes: the typed keys', ``created`` and ``meta``."""
        seconds = created_seconds(created_at)
        row: dict[str, Any] = {
            "created": math.nan if seconds is None else seconds,
            "meta": projection(metadata, created_at, self.keys),
        }
        for key, n in self.slots.items():
            tags, numbers, strings = typed_values(metadata, key)
            row |= {
                f"k{n}v": tags,
                f"k{n}l": numbers[0] if numbers else math.nan,
                f"k{n}g": numbers[-1] if numbers else math.nan,
                f"k{n}m": strings[0] if strings else NO_LEAST,
                f"k{n}x": strings[-1] if strings else NO_GREATEST,
            }
        return row

    def expression(self, scope: Scope) -> str | None:
        """The scope as an expression over a gallery's rows (None: no limit); rows whose values
        at a typed key the scope reads overflowed pass (see the module)."""
        expr = scope.expr()
        if expr is None:
            return None
        read = sorted(self.slots[path] for path in paths(expr) if path in self.slots)
        overflowed = [f'array_contains(k{slot}v, "{OVERFLOW}")' for slot in read]
        return "(" + " or ".join([self._expr(expr), *overflowed]) + ")" if overflowed else self._expr(expr)

    def _expr(self, expr: Expr) -> str:
        if isinstance(expr, AllOf | AnyOf):
            if not expr.terms:
                return "(id > 0)" if isinstance(expr, AllOf) else NOTHING
            joiner = " and " if isinstance(expr, AllOf) else " or "
            return "(" + joiner.join(self._expr(term) for term in expr.terms) + ")"
        slot = self.slots.get(expr.path)
        if isinstance(expr, Exists):
            present = '(exists meta["t"])' if expr.path == CREATED else f'(exists meta["e{tag(expr.path)}"])'
            if expr.path == COLLECTION:
                present = "(id > 0)"
            elif slot is not None:
                present = f'array_contains(k{slot}v, "{PRESENT}")'
            return present if expr.present else f"(not {present})"
        if expr.op in NEGATED:
            return f"(not {self._expr(Compare(expr.path, NEGATED[expr.op], expr.value))})"
        if expr.op == IN:
            return self._expr(AnyOf(tuple(Compare(expr.path, EQ, one) for one in expr.value)))
        if expr.path == COLLECTION:
            return f"(collection {_OPS[expr.op]} {literal(str(expr.value))})" if kind(expr.value) == STRING else NOTHING
        if expr.path == CREATED:
            return f"(created {_OPS[expr.op]} {literal(float(expr.value))})"
        if slot is not None:
            return _typed_compare(slot, expr.op, expr.value)
        return _compare(tag(expr.path), expr.op, expr.value)


UNTYPED = Layout()  # the layout of a collection without typed keys (or only ever dropped)


def _typed_compare(slot: int, op: str, operand: Any) -> str:
    sort = kind(operand)
    if op == EQ:
        wanted = value_tag(sort, operand)
        return f"array_contains(k{slot}v, {literal(wanted)})" if _fits(wanted) else NOTHING
    if sort == NUMBER:
        return f"(k{slot}{'g' if op in (GT, GTE) else 'l'} {_OPS[op]} {literal(operand)})"
    return f"(k{slot}{'x' if op in (GT, GTE) else 'm'} {_OPS[op]} {literal(value_tag(STRING, operand))})"


def _compare(h: str, op: str, operand: Any) -> str:
    sort = kind(operand)
    if sort == NULL:
        return f'(meta["z{h}"] == true)'
    if op == EQ:
        field = {NUMBER: "n", STRING: "s"}.get(sort, "b")
        return f'json_contains(meta["{field}{h}"], {literal(operand)})'
    low, high = ("l", "g") if sort == NUMBER else ("m", "x")
    field = high if op in (GT, GTE) else low  # some value above the bound: the greatest is
    return f'(meta["{field}{h}"] {_OPS[op]} {literal(operand)})'
