"""The web page at ``/``: plain HTML, CSS and JavaScript in ``static/``, no build step, no CDN.

The page talks to the same API as any client, with the key and secret a person signs in
with (kept in the tab's session storage, sent as HTTP Basic), so it needs nothing of its
own on the server beyond serving these files.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"
# own files only; stored photos are the signed links the API answers (same origin), the
# photo picked for a search is shown through a blob: URL
POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)

web = Blueprint("web", __name__, static_folder=STATIC, static_url_path="/web")


@web.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html", max_age=0)


@web.after_request
def protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
