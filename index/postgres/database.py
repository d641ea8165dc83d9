"""A pool of connections to PostgreSQL, and the one way the catalog runs a transaction.

Connections are checked when taken from the pool and opened with short connect and
statement timeouts, so a dead server fails a request within seconds instead of hanging
it, and the pool reconnects by itself when the server is back. Every failure to reach
the server becomes ``StorageUnavailableError``: nothing of the transaction was kept.
A connection lost while a commit was on its way is the one case where that is not known;
it is ``CommitUnknownError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import IsolationLevel
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import CommitUnknownError, StorageUnavailableError

log = logging.getLogger(__name__)

CONNECT_SECONDS = 2  # a server that does not answer a connection in this long is down
WAIT_SECONDS = 2  # longest wait for a free (or newly opened) connection: how fast a request fails
STATEMENT_MS = 30_000  # longest statement; snapshots and bulk reads lift it for their transaction
RESOLVE_SECONDS = 30.0  # how long an in-doubt commit waits for the server to tell what happened
UNREACHABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class Database:
    def __init__(self, url: str, max_connections: int = 8) -> None:
        self.url = url
        options = f"-c statement_timeout={STATEMENT_MS} -c idle_in_transaction_session_timeout=60000"
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=WAIT_SECONDS,
            kwargs={"connect_timeout": CONNECT_SECONDS, "options": options},
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,  # keep trying for as long as the server is down
            open=False,
            name="catalog",
        )
        self.pool.open(wait=False)

    @contextmanager
    def transaction(self, long: bool = False, snapshot: bool = False) -> Iterator[psycopg.Cursor[TupleRow]]:
        """One transaction on a pooled connection, committed when the block ends.

        ``long``: no statement timeout, for reads of a whole gallery. ``snapshot``: every
        statement sees the same committed state (repeatable read), for reads that must agree.
        """
        committing = False
        try:
            with self.pool.connection() as connection:
                connection.isolation_level = IsolationLevel.REPEATABLE_READ if snapshot else None
                with connection.transaction():
                    with connection.cursor() as cursor:
                        if long:
                            cursor.execute("SET LOCAL statement_timeout = 0")
                        yield cursor
                    committing = True
        except UNREACHABLE as exc:
            if committing:
                raise CommitUnknownError(f"PostgreSQL went away during a commit ({exc})") from exc
            raise StorageUnavailableError(f"PostgreSQL cannot be reached ({_first_line(exc)})") from exc

    def resolve(self, check: Callable[[psycopg.Cursor], bool], seconds: float = RESOLVE_SECONDS) -> bool | None:
        """``check`` run once the server answers again (None if it stays away ``seconds``): what an
        in-doubt commit did. ``check`` locks what the commit wrote first, so it waits for a commit
        still on its way instead of answering before it lands."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                with self.transaction() as cursor:
                    return check(cursor)
            except StorageUnavailableError:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.5)

    @contextmanager
    def session(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode, held for the block (session-level advisory locks)."""
        try:
            with self.pool.connection() as connection:
                connection.autocommit = True
                try:
                    yield connection
                finally:
                    connection.autocommit = False
        except UNREACHABLE as exc:
            raise StorageUnavailableError(f"PostgreSQL cannot be reached ({_first_line(exc)})") from exc

    def close(self) -> None:
        self.pool.close()


def one(cursor: psycopg.Cursor[TupleRow]) -> TupleRow:
    """The row of a statement that always answers one (an aggregate, a lock function, a
    RETURNING of what it just wrote)."""
    found = cursor.fetchone()
    if found is None:
        raise RuntimeError("a statement that always answers a row answered none")
    return found


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
