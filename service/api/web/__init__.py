"""The web page at ``/``: plain HTML, CSS and JavaScript in ``static/``, no build step, no CDN.

The page talks to the same API as any client, with the key and secret a person signs in
with (kept in the tab's session storage, sent as HTTP Basic), so it needs nothing of its
own on the server beyond serving these files, and telling the pages where the API and its
document are (service/api/paths.py): ``{{api}}`` and ``{{document}}`` in a page's HTML.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from flask import Blueprint, Response, request

from ..paths import API, DOCUMENT

STATIC = Path(__file__).resolve().parent / "static"
# relative to the page, so that a proxy may serve the whole service under a prefix of its own
PLACES = {"{{api}}": API.lstrip("/") + "/", "{{document}}": DOCUMENT.lstrip("/")}
# own files only; stored photos are the signed links the API answers (same origin), the
# photo picked for a search is shown through a blob: URL
POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)

web = Blueprint("web", __name__, static_folder=STATIC, static_url_path="/web")


@cache
def _filled(path: Path) -> str:
    text = path.read_text()
    for place, value in PLACES.items():
        text = text.replace(place, value)
    return text


def page(path: Path) -> Response:
    """A page of ``static/`` with the API's places filled in; the browser asks again each time."""
    response = Response(_filled(path), mimetype="text/html")
    response.cache_control.no_cache = True
    response.add_etag()
    response.make_conditional(request)  # a 304 when the browser holds this page already
    return response


@web.get("/")
def index() -> Response:
    return page(STATIC / "index.html")


@web.after_request
def protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
