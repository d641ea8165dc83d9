"""gunicorn's threaded worker, answering the HTTP server's own refusals in the API's envelope.

gunicorn refuses a request it cannot read (a malformed request line or header, a request
line or header block over its limits, a broken chunked body) before the app sees it, and
writes an HTML page. A client of this API reads JSON whatever happens, so this worker lets
gunicorn decide, log and count the refusal as always, and only rewrites the page it would
send as the envelope: gunicorn's HTTP status, with the code the app answers that status
with (service/api/errors.py: code 7 for 400, 414, 431, ..., code 13 for the server's own
fault, 500), and gunicorn's description in the message.

gunicorn also refuses any second Content-Type header (RFC 9110 5.3: the field takes one
value), while a common PHP HTTP library sends the app's and its own. Two that say the same
are one header, so ``ServedRequest`` folds Content-Type headers that agree into one (same
media type, no parameter given two values) and refuses, with the envelope, those that do
not. A repeated Host or Content-Length stays refused: RFC 9112 requires that for Host, and
a repeated length is how requests are smuggled past a proxy.

This leans on two gunicorn internals, ``RequestParser.mesg_class`` (which request class a
connection's parser makes) and ``Request._apply_header_policy`` (where a repeated singleton
header is refused); tests/system/test_vendor_clients.py replays each case through a real
gunicorn, so an upgrade that changes them fails there. docs/vendor-api.md says why this
was chosen over another server, and what it costs.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from typing import Any

from gunicorn.http.errors import InvalidHeader
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker
from werkzeug.exceptions import InternalServerError, default_exceptions
from werkzeug.http import dump_options_header, parse_options_header

from ..core.config import Settings
from .envelope import envelope
from .errors import record_of

CONTENT_TYPE = "CONTENT-TYPE"
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)")
_PAGE_TEXT = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.DOTALL)


class ConflictingHeader(InvalidHeader):
    def __init__(self, values: list[str], req: Request) -> None:
        super().__init__(CONTENT_TYPE, req)
        self.values = values

    def __str__(self) -> str:
        return "the request has Content-Type headers that disagree: " + " and ".join(map(repr, self.values))


def folded(values: list[str]) -> str | None:
    """One Content-Type that says what each of ``values`` says, or None when two disagree:
    another media type, or a parameter with another value (a charset in any case; a boundary
    to the letter)."""
    media: str | None = None
    params: dict[str, str] = {}
    for value in values:
        kind, options = parse_options_header(value)
        if media is not None and kind.lower() != media:
            return None
        media = kind.lower()
        for name, option in options.items():
            kept = params.setdefault(name.lower(), option)
            if kept != option and (name.lower() == "boundary" or kept.lower() != option.lower()):
                return None
    return dump_options_header(media, params)


class ServedRequest(Request):
    """gunicorn's request, with repeated Content-Type headers that agree folded into one."""

    def _apply_header_policy(self, name: str, value: str, scheme_state: Any, seen: set, *args: Any, **kwargs: Any):
        if name == CONTENT_TYPE:
            seen.discard(name)  # repeats are judged once every header is read (set_body_reader)
        return super()._apply_header_policy(name, value, scheme_state, seen, *args, **kwargs)

    def set_body_reader(self) -> None:
        headers: list[tuple[str, str]] = self.headers  # type: ignore[has-type]  # gunicorn is untyped
        values = [value for name, value in headers if name == CONTENT_TYPE]
        if len(values) > 1:
            one = folded(values)
            if one is None:
                raise ConflictingHeader(values, self)
            first = next(i for i, (name, _) in enumerate(headers) if name == CONTENT_TYPE)
            headers = [(n, v) for n, v in headers if n != CONTENT_TYPE]
            headers.insert(first, (CONTENT_TYPE, one))
            self.headers = headers
        super().set_body_reader()


class _Page:
    """Stands in for the client's socket while gunicorn writes its error page."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


def refusal(page: bytes, aliases: bool) -> bytes:
    """gunicorn's error page as an HTTP answer carrying the envelope: the same status, its
    description as the message's detail."""
    line = _STATUS_LINE.match(page)
    status, reason = (int(line.group(1)), line.group(2).decode("latin-1")) if line else (500, "Internal Server Error")
    text = _PAGE_TEXT.search(page)
    detail = html.unescape(text.group(1).decode("latin-1")) if text else ""
    record = record_of(default_exceptions.get(status, InternalServerError))  # the code the app would answer
    message = f"{record.message}: the HTTP server refused the request ({reason})" + (f": {detail}" if detail else "")
    body = json.dumps(envelope(None, int(record.code), message, aliases), separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: {uuid.uuid4().hex}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class EnvelopeWorker(ThreadWorker):
    """``worker_class`` of service/api/gunicorn.conf.py."""

    def init_process(self) -> None:
        self.aliases = Settings.from_env().api.code_aliases
        RequestParser.mesg_class = ServedRequest  # this worker process's connections parse with it
        super().init_process()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        page = _Page()
        super().handle_error(req, page, addr, exc)
        try:
            write_nonblock(client, refusal(page.data, self.aliases))
        except Exception:  # the client is gone: nothing to tell it
            self.log.debug("Failed to send error message.")
