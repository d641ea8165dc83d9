"""A MilvusClient opened on first use, whose every failure is ``StorageUnavailableError``.

A replica may start, or keep running, while Milvus is down: the client is (re)opened when
a call needs it, every call has a short timeout, and gRPC reconnects by itself once the
server is back. After a failure, calls fail at once for ``RETRY_SECONDS`` (then one is let
through to see whether Milvus is back), so requests fail fast instead of each waiting out
the timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import StorageUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")
CALL_SECONDS = 5.0  # one request to Milvus, retries included
RETRY_SECONDS = 2.0  # after a failure, how long calls fail at once
BULK_SECONDS = 120.0  # a large insert, a flush, a compaction


class Milvus:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._client: Any = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down_because = ""
        self._failed_at = 0.0

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                self._client = MilvusClient(uri=self.uri, timeout=CALL_SECONDS)
            return self._client

    def call(self, what: Callable[[Any], T]) -> T:
        """``what(client)``, with any failure of Milvus as StorageUnavailableError."""
        import grpc
        from pymilvus.exceptions import MilvusException

        if time.monotonic() < self._down_until:
            raise StorageUnavailableError(f"Milvus at {self.uri} is unavailable ({self._down_because})")
        try:
            done = what(self.client())
        except (MilvusException, grpc.RpcError, OSError, RuntimeError) as exc:
            self._down_until = time.monotonic() + RETRY_SECONDS
            self._down_because = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            self._failed_at = time.monotonic()
            raise StorageUnavailableError(f"Milvus at {self.uri} cannot be reached ({self._down_because})") from exc
        self._failed_at = 0.0
        return done

    def failed_within(self, seconds: float) -> bool:
        """Whether the last call failed, less than ``seconds`` ago."""
        return bool(self._failed_at) and time.monotonic() - self._failed_at < seconds

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # closing a client of a dead server is not worth failing a shutdown
                    log.debug("closing the Milvus client failed", exc_info=True)
                self._client = None
