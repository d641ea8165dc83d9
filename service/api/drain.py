"""Read what the app left unread of a request body before the answer is sent.

A client such as Python's http.client or requests sends the whole body before it reads a
word of the answer. A server that answers 413 (or 401) after reading part of a 60 MiB
body and closes the connection makes that client fail with a broken pipe instead of
showing the envelope. So the rest of the body is read and thrown away, a chunk at a time
(memory stays bounded whatever the size), and only then is the answer returned. A
client that keeps sending for longer than ``DRAIN_SECONDS`` is cut off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

CHUNK = 1 << 16
DRAIN_SECONDS = 60.0


class DrainUnreadBody:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        answer = self.app(environ, start_response)
        stream = environ.get("wsgi.input")
        if stream is not None:
            deadline = time.monotonic() + DRAIN_SECONDS
            while stream.read(CHUNK) and time.monotonic() < deadline:
                pass
        return answer
