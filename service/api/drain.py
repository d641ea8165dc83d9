"""The request body around the app: a body the server cannot read is the client's error, and
what the app left unread is read before the answer is sent.

A client such as Python's http.client or requests sends the whole body before it reads a
word of the answer. A server that answers 413 (or 401) after reading part of a 60 MiB
body and closes the connection makes that client fail with a broken pipe instead of
showing the envelope. So the rest of the body is read and thrown away, a chunk at a time
(memory stays bounded whatever the size), and only then is the answer returned. A
client that keeps sending for longer than ``DRAIN_SECONDS`` is cut off.

The server reads the body as the app asks for it, so a body it cannot read (a broken
chunked encoding, or one that ends before its length) fails inside the app: that failure
is a bad request (code 7), not the app's internal error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import BadRequest

CHUNK = 1 << 16
DRAIN_SECONDS = 60.0


class UnreadableBody(BadRequest):
    pass


class _Body:
    """The server's body stream; its read errors raised as ``UnreadableBody``."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def _checked(self, read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except Exception as exc:
            raise UnreadableBody(f"the request body could not be read: {exc}") from exc

    def read(self, *size: int) -> bytes:
        return self._checked(self.stream.read, *size)

    def readline(self, *size: int) -> bytes:
        return self._checked(self.stream.readline, *size)

    def readlines(self, *hint: int) -> list[bytes]:
        return self._checked(self.stream.readlines, *hint)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


class DrainUnreadBody:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is not None:
            environ["wsgi.input"] = stream = _Body(stream)
        answer = self.app(environ, start_response)
        if stream is not None:
            deadline = time.monotonic() + DRAIN_SECONDS
            with contextlib.suppress(UnreadableBody):  # the server closes a connection it cannot read
                while stream.read(CHUNK) and time.monotonic() < deadline:
                    pass
        return answer
