"""A throw-away HTTP server on 127.0.0.1 for what the tests would otherwise download."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# path -> (HTTP status, headers, body)
Answer = tuple[int, dict[str, str], bytes]


@contextmanager
def serve(answer: Callable[[str], Answer], seen: list[tuple[str, str]] | None = None) -> Iterator[str]:
    """Serve GET requests with ``answer(path)``; yields the base URL. Each request's path and
    Host header are appended to ``seen``, for tests that count what was fetched."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if seen is not None:
                seen.append((self.path, self.headers.get("Host", "")))
            status, headers, body = answer(self.path)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
