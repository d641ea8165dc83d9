"""The cluster catalog's metadata index: the typed values each image holds at its gallery's
indexed keys, one row per value in ``image_values``, and scopes compiled to SQL over them.

An image's collection and creation time are columns of ``images`` (always indexed). A metadata
key is indexed per gallery once a filter uses it (``filter_keys``): the rows of its values
are written by every write that touches the image, and by a build that walks the gallery's
images in id order, a batch per transaction, noting how far it got (``built_upto``; NULL once
done): writes keep the rows of the images the walk has passed, the walk reads the others as
they are when it reaches them. Each gallery's writes lock its row first, and so does each
step of a build, so the two never interleave inside a transaction.

A scope compiles to two SQL conditions over ``images i``: the images that pass for certain,
and those that may (a key not indexed yet stands for "maybe"); the second lot is checked on
its metadata with ``index.filters.matches``, the reference the SQL must agree with (the
contract tests and a property test compare them). Strings compare by code point (``COLLATE
"C"``), numbers as float8, as in ``index.filters``.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg

from ..filters import (
    COLLECTION,
    CREATED,
    EQ,
    IN,
    NEGATED,
    NUMBER,
    RESERVED,
    STRING,
    AllOf,
    AnyOf,
    Compare,
    Exists,
    Expr,
    kind,
    resolve,
    typed,
)
from ..records import ImageRecord
from .database import Database
from .rows import IMAGE, image

BUILD_BATCH = 2000  # images indexed per transaction of a build
PREFIX = 400  # bytes of a string the index holds (a btree entry has a size limit)
EXISTS_KIND, NULL_KIND, BOOL_KIND = "e", "z", "b"
SQL_OPS = {EQ: "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
INSERT = "INSERT INTO image_values (gallery, path, kind, num, str, image) VALUES (%s, %s, %s, %s, %s, %s)"

Sql = tuple[str, list[object]]
TRUE: Sql = ("true", [])
FALSE: Sql = ("false", [])


def value_rows(gid: int, record: ImageRecord, paths: Iterable[str]) -> list[tuple]:
    """The ``image_values`` rows of one image for ``paths``."""
    found: set[tuple[str, str, float | None, bytes | None]] = set()
    for path in paths:
        present, values = resolve(record.metadata, path)
        if not present:
            continue
        found.add((path, EXISTS_KIND, None, None))
        for value in values:
            for sort, typed_value in typed(value):
                if sort == NUMBER:
                    found.add((path, NUMBER, typed_value, None))
                elif sort == STRING:
                    found.add((path, STRING, None, typed_value.encode()))
                elif typed_value is None:
                    found.add((path, NULL_KIND, None, None))
                else:
                    found.add((path, BOOL_KIND, 1.0 if typed_value else 0.0, None))
    return [(gid, path, sort, number, text, record.id) for path, sort, number, text in found]


def registry(cursor: psycopg.Cursor, gid: int) -> dict[str, int | None]:
    """The gallery's indexed metadata keys: None when ready, else how far the build got."""
    found = cursor.execute("SELECT path, built_upto FROM filter_keys WHERE gallery = %s", (gid,))
    return dict(found.fetchall())


def maintained(cursor: psycopg.Cursor, gid: int, image_id: int) -> list[str]:
    return [path for path, upto in registry(cursor, gid).items() if upto is None or image_id <= upto]


def index_image(cursor: psycopg.Cursor, gid: int, record: ImageRecord) -> None:
    """Write the value rows of a new or changed image (those of a changed one removed first)."""
    paths = maintained(cursor, gid, record.id)
    if paths:
        cursor.execute("DELETE FROM image_values WHERE image = %s", (record.id,))
        cursor.executemany(INSERT, value_rows(gid, record, paths))


class PostgresMetadataIndex:
    """``index.catalog.MetadataIndex`` in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self.db = database

    def keys(self, gid: int) -> dict[str, bool]:
        with self.db.transaction() as cursor:
            found = registry(cursor, gid)
        return {**dict.fromkeys(RESERVED, True), **{path: upto is None for path, upto in found.items()}}

    def start(self, gid: int, paths: Iterable[str], most: int) -> list[str]:
        with self.db.transaction() as cursor:
            images = _lock(cursor, gid)
            known = registry(cursor, gid)
            own, started = len(known), []
            for path in paths:
                if path in known or path in RESERVED or own >= most:
                    continue
                own += 1
                upto = None if images == 0 else 0
                cursor.execute(
                    "INSERT INTO filter_keys (gallery, path, built_upto) VALUES (%s, %s, %s)", (gid, path, upto)
                )
                if upto is not None:
                    started.append(path)
            return started

    def build(self, gid: int, path: str, batches: int | None = None) -> bool:
        steps = 0
        while batches is None or steps < batches:
            steps += 1
            with self.db.transaction() as cursor:
                _lock(cursor, gid)
                state = registry(cursor, gid)
                if path not in state or state[path] is None:
                    return True
                found = cursor.execute(
                    f"SELECT {IMAGE} FROM images WHERE gallery = %s AND id > %s ORDER BY id LIMIT %s",
                    (gid, state[path], BUILD_BATCH),
                ).fetchall()
                records = [image(row) for row in found]
                cursor.executemany(INSERT, [row for record in records for row in value_rows(gid, record, [path])])
                upto = records[-1].id if len(records) == BUILD_BATCH else None
                cursor.execute(
                    "UPDATE filter_keys SET built_upto = %s WHERE gallery = %s AND path = %s", (upto, gid, path)
                )
            if upto is None:
                return True
        return False


def _lock(cursor: psycopg.Cursor, gid: int) -> int:
    """Lock the gallery's row, as its writes do (``images.locked_gallery``); its image count."""
    found = cursor.execute("SELECT images FROM galleries WHERE id = %s FOR UPDATE", (gid,)).fetchone()
    if found is None:
        raise KeyError(gid)
    return int(found[0])


# -- scopes as SQL --------------------------------------------------------------------------------


class Compiler:
    """One scope as the SQL of (sure, possible) over ``images i`` of one gallery."""

    def __init__(self, gid: int, ready: set[str]) -> None:
        self.gid, self.ready = gid, ready

    def compile(self, expr: Expr) -> tuple[Sql, Sql]:
        if isinstance(expr, AllOf | AnyOf):
            parts = [self.compile(term) for term in expr.terms]
            joiner = " AND " if isinstance(expr, AllOf) else " OR "
            return _join(joiner, [sure for sure, _ in parts]), _join(joiner, [possible for _, possible in parts])
        if isinstance(expr, Compare) and expr.op in NEGATED:
            sure, possible = self.compile(Compare(expr.path, NEGATED[expr.op], expr.value))
            return _not(possible), _not(sure)
        if isinstance(expr, Exists) and not expr.present:
            sure, possible = self.compile(Exists(expr.path, True))
            return _not(possible), _not(sure)
        if isinstance(expr, Compare) and expr.op == IN:
            return self.compile(AnyOf(tuple(Compare(expr.path, EQ, one) for one in expr.value)))
        if expr.path == COLLECTION:
            exact = self._column("i.collection", expr)
        elif expr.path == CREATED:
            exact = self._column("i.created", expr)
        elif expr.path not in self.ready:
            return FALSE, TRUE  # not indexed (yet): every image may pass
        else:
            exact = self._values(expr)
        return exact, exact

    def _column(self, column: str, expr: Compare | Exists) -> Sql:
        if isinstance(expr, Exists):
            return (f"({column} IS NOT NULL)", [])
        return (f"({column} {SQL_OPS[expr.op]} %s)", [expr.value])

    def _values(self, expr: Compare | Exists) -> Sql:
        head = "i.id IN (SELECT image FROM image_values WHERE gallery = %s AND path = %s AND kind = %s"
        if isinstance(expr, Exists):
            return (head + ")", [self.gid, expr.path, EXISTS_KIND])
        sort, operator = kind(expr.value), SQL_OPS[expr.op]
        if sort == NUMBER:
            return (head + f" AND num {operator} %s)", [self.gid, expr.path, NUMBER, float(expr.value)])
        if sort == STRING:
            prefix = "=" if operator == "=" else operator.rstrip("=") + "="  # the prefixes of a range's strings
            cut = f"substring(%s::bytea FROM 1 FOR {PREFIX})"
            condition = f" AND substring(str FROM 1 FOR {PREFIX}) {prefix} {cut} AND str {operator} %s)"
            encoded = str(expr.value).encode()
            return (head + condition, [self.gid, expr.path, STRING, encoded, encoded])
        if expr.value is None:
            return (head + ")", [self.gid, expr.path, NULL_KIND])
        return (head + " AND num = %s)", [self.gid, expr.path, BOOL_KIND, 1.0 if expr.value else 0.0])


def _join(joiner: str, parts: list[Sql]) -> Sql:
    if not parts:  # $in []: nothing is in it
        return TRUE if joiner == " AND " else FALSE
    return "(" + joiner.join(sql for sql, _ in parts) + ")", [param for _, params in parts for param in params]


def _not(part: Sql) -> Sql:
    # A comparison with a missing creation time is NULL, which WHERE takes as false and AND and OR
    # keep false-like; only a negation must say it: NULL is "not true". (Comparing the bare column
    # is what lets PostgreSQL read its index: ``coalesce(...)`` around it hid it.)
    return f"(({part[0]}) IS NOT TRUE)", part[1]
