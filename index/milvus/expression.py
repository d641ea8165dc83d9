"""Scopes as Milvus boolean expressions, over what each face's row holds beside its vector.

A row holds its image's collection (a VARCHAR field) and a JSON field ``meta``, a typed
projection of the image's metadata made for expressions: for every path of the metadata
(every key at every level, lists walked into, as ``index.filters.leaves``), named by a hash of
the path so that no key of a client's ever reaches the expression text,

- ``e<h>``: true, the path is present;
- ``n<h>``: its numbers (numbers, and strings written as numbers) as a list of floats, with
  ``l<h>`` / ``g<h>`` their least and greatest; ``s<h>``, ``m<h>``, ``x<h>`` the same for its
  strings; ``b<h>`` its booleans; ``z<h>``: true when it holds a null;

and ``t``, the creation time in seconds (absent when ``created_at`` is not a time). Then every
condition of ``index.filters`` is one exact expression: some value equals (``json_contains``),
some value is above a bound (the greatest is), below it (the least is), ``$ne`` / ``$nin`` /
``$exists: false`` are ``not`` of the positive (Milvus's ``not`` of a missing key is true, as
``index.filters`` wants). Numbers are written as float literals (a JSON list of floats holds no
integer ``5``), strings as literals with every character outside printable ASCII escaped,
which Milvus's parser (Go's) reads back exactly.

All of a gallery's rows are in its partition (the partition key), so Milvus evaluates the
expression over that gallery's rows only; JSON fields have no index in Milvus 2.3: the cost
is a pass over the gallery's rows' JSON, whichever keys the filter names.
"""

from __future__ import annotations

import hashlib
import math
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
    typed,
)

NOTHING = "(id < 0)"  # an expression no row passes (ids are positive)
_OPS = {EQ: "==", GT: ">", GTE: ">=", LT: "<", LTE: "<="}


def tag(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:16]


def projection(metadata: dict[str, Any], created_at: str) -> dict[str, Any]:
    """The ``meta`` JSON of a row: see the module."""
    meta: dict[str, Any] = {}
    for path, values in leaves(metadata):
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


def expression(scope: Scope) -> str | None:
    """The scope as an expression over a gallery's rows (None: no limit)."""
    expr = scope.expr()
    return None if expr is None else _expr(expr)


def _expr(expr: Expr) -> str:
    if isinstance(expr, AllOf | AnyOf):
        if not expr.terms:
            return "(id > 0)" if isinstance(expr, AllOf) else NOTHING
        joiner = " and " if isinstance(expr, AllOf) else " or "
        return "(" + joiner.join(_expr(term) for term in expr.terms) + ")"
    if isinstance(expr, Exists):
        present = '(exists meta["t"])' if expr.path == CREATED else f'(exists meta["e{tag(expr.path)}"])'
        if expr.path == COLLECTION:
            present = "(id > 0)"
        return present if expr.present else f"(not {present})"
    if expr.op in NEGATED:
        return f"(not {_expr(Compare(expr.path, NEGATED[expr.op], expr.value))})"
    if expr.op == IN:
        return _expr(AnyOf(tuple(Compare(expr.path, EQ, one) for one in expr.value)))
    if expr.path == COLLECTION:
        return f"(collection {_OPS[expr.op]} {literal(str(expr.value))})" if kind(expr.value) == STRING else NOTHING
    if expr.path == CREATED:
        return f'(meta["t"] {_OPS[expr.op]} {literal(float(expr.value))})'
    return _compare(tag(expr.path), expr.op, expr.value)


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
