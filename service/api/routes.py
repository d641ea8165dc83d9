"""The API's endpoints: parse into the typed request, call the use case, render.

Two families of paths reach the same views: the Face Search API v2 (``api``), and the
vendor's earlier v1 paths (``v1``, ``V1_ROUTES``) that deployed clients still call, with
the same envelope, credentials, throttles and metrics (docs/vendor-api.md).
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, g, request

from ..core.links import Link
from ..core.requests import ImageUpdate
from .auth import authenticate
from .context import app, use_cases
from .envelope import success
from .errors import ApiError, Code
from .render import LINKS, collection, face_matches, image_detail, image_summary, match, status
from .requests import MAX_ID, RequestTypes, form_body

API = "/api/v2/face_search"
V1 = "/backend/api/v1/request/face_search"

api = Blueprint("api", __name__, url_prefix=API)
v1 = Blueprint("v1", __name__, url_prefix=V1)
IMAGE = f"/images/<int(max={MAX_ID}):image_id>"
LINKED = {endpoint: rendition for endpoint, rendition in LINKS.values()}  # what a signed link opens


def types() -> RequestTypes:
    return app().request_types


def admit() -> None:
    """A photo's signed link lets whoever holds it have that photo (or its thumbnail) without
    a key; every other request, and one that carries credentials, is the key owner's."""
    rendition = LINKED.get(request.endpoint or "")
    query = types().link_query
    if rendition is not None and not query.schema.__required_keys__.isdisjoint(request.args):
        sent = query.parse(request.args)  # malformed: code 7, whoever asks
        if "Authorization" not in request.headers:
            image_id = (request.view_args or {})["image_id"]
            g.link = Link(sent["gallery"], image_id, rendition, sent["expires"])
            use_cases().links.verify(g.link, sent["signature"])
            return
    authenticate()


api.before_request(admit)
v1.before_request(authenticate)


def gallery() -> int:
    """The gallery this request may read: the key's, or the one its signed link names."""
    link: Link | None = g.get("link")
    return link.gallery if link is not None else g.key.gallery


def body() -> dict:
    """The request as a dict: a JSON object (whatever the Content-Type says, or without one,
    as the vendor's demos post it), or a multipart upload in the same shape."""
    if request.mimetype == "multipart/form-data":
        return form_body(request.form, request.files)
    raw = request.get_data(cache=True)
    try:
        parsed = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(Code.BAD_REQUEST, "the body is not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise ApiError(Code.BAD_REQUEST, "the body must be a JSON object")
    return parsed


@api.get("/images")
def list_images() -> Response:
    query = {name: values if len(values) > 1 else values[0] for name, values in request.args.lists()}
    page = types().list_query.parse(query)
    records, total = use_cases().gallery.page(g.key, page)
    return success([image_summary(r) for r in records], total=total, offset=page.offset, limit=page.limit)


@api.get("/collections")
def list_collections() -> Response:
    return success([collection(found) for found in use_cases().gallery.collections(g.key)])


@api.delete("/collections/<path:name>")
def delete_collection(name: str) -> Response:
    deleted = use_cases().gallery.delete_collection(g.key, types().collection_path.parse(name))
    return success(None, deleted=deleted)


@api.post("/images")
def add_image() -> Response:
    data = body()
    if "ids" in data and "image" not in data:
        return _delete(data)  # the documented demos send the bulk delete as POST /images
    return success(image_detail(use_cases().adder.add(g.key, types().add_image.parse(data))))


@api.delete("/images")
def delete_images() -> Response:
    return _delete(body())


def _delete(data: dict) -> Response:
    deleted = use_cases().gallery.delete(g.key, types().delete_images.parse(data))
    return success(None, deleted=len(deleted), deleted_ids=deleted)


@api.get(IMAGE)
def get_image(image_id: int) -> Response:
    return success(image_detail(use_cases().gallery.get(g.key, image_id)))


@api.route(IMAGE, methods=["PUT", "POST"])
def update_image(image_id: int) -> Response:
    metadata, collection_name = types().update_metadata.parse(body())
    return _update(ImageUpdate(image_id, metadata, collection_name))


def edit_metadata() -> Response:
    """v1: the image's id in the body."""
    return _update(types().edit_metadata.parse(body()))


def _update(update: ImageUpdate) -> Response:
    return success(image_detail(use_cases().gallery.update(g.key, update)))


@api.get(f"{IMAGE}/file")
def photo(image_id: int) -> Response:
    return _picture(*use_cases().gallery.photo(gallery(), image_id))


@api.get(f"{IMAGE}/thumbnail")
def thumbnail(image_id: int) -> Response:
    return _picture(use_cases().gallery.thumbnail(gallery(), image_id), "image/jpeg")


def _picture(data: bytes, mime: str) -> Response:
    """A photo's bytes. Through a signed link: cached no longer than the link works, and
    embeddable by other sites' pages (``Cross-Origin-Resource-Policy``), which is its purpose."""
    response = Response(data, mimetype=mime)
    response.headers["X-Content-Type-Options"] = "nosniff"
    link: Link | None = g.get("link")
    if link is not None:
        response.headers["Cache-Control"] = f"private, max-age={max(0, link.expires - int(time.time()))}"
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    else:
        response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@api.post("/search")
def search_images() -> Response:
    query = types().search.parse(body())
    if query.face == "all":
        return success([face_matches(a) for a in use_cases().searcher.search_each_face(g.key, query)])
    return success([match(m) for m in use_cases().searcher.search(g.key, query)])


@api.get("/index")
def index_state() -> Response:
    return success(status(use_cases().maintenance.index_status(g.key)))


# The vendor's v1 paths: (method, path, the view that serves it).
V1_ROUTES = (
    ("GET", "/get_all_images", list_images),
    ("POST", "/search", search_images),
    ("POST", "/add", add_image),
    ("POST", "/edit_metadata", edit_metadata),
    ("POST", "/delete", delete_images),
)
for _method, _path, _view in V1_ROUTES:
    v1.add_url_rule(_path, view_func=_view, methods=[_method])
