"""One structured log line per request, its id in a response header, and its metrics.

The line holds the request id, the authenticated key's name, the route, the HTTP status,
the API code and the duration: never a header's value, a body or a query string, so no
secret and no image byte can reach the log. An ``X-Request-ID`` sent by a proxy is kept
when it is a plain token, so one id follows the request through every log.

"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from . import metrics

HEADER = "X-Request-ID"
QUIET = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: logged at debug level only
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

log = logging.getLogger("face_search.requests")


def _started() -> None:
    g.started = time.perf_counter()
    sent = request.headers.get(HEADER, "")
    g.request_id = sent if _TOKEN.fullmatch(sent) else uuid.uuid4().hex


def api_code(response: Response) -> str:
    """The envelope's status_code as text: "0" for any success, "" for answers without an envelope."""
    if response.status_code < 400:
        return "0" if request.blueprint in ("api", "v1") else ""
    body = response.get_json(silent=True) if response.is_json else None
    return str(body["status_code"]) if isinstance(body, dict) and "status_code" in body else ""


def _finished(response: Response) -> Response:
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[HEADER] = request_id
    route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
    code = api_code(response)
    metrics.observe_request(
        request.method, route, response.status_code, code, seconds, "Retry-After" in response.headers
    )
    key = g.get("key")
    fields = {
        "request_id": request_id,
        "method": request.method,
        "path": request.path,
        "endpoint": route,
        "status": response.status_code,
        "code": code,
        "duration_ms": round(seconds * 1000, 1),
        "key": key.name if key is not None else None,
        "remote": request.remote_addr,
        "bytes_in": request.content_length or 0,
    }
    level = logging.DEBUG if request.path in QUIET else logging.INFO
    message = f"{request.method} {request.path} {response.status_code} {fields['duration_ms']}ms"
    log.log(level, message, extra={"fields": fields})
    return response


def install(app: Flask) -> None:
    app.before_request(_started)
    app.after_request(_finished)
