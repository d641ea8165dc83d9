"""The Face Search API v2 endpoints: parse into the typed request, call the use case, render."""

from __future__ import annotations

import json

from flask import Blueprint, Response, g, request

from ..core.requests import MetadataUpdate
from .auth import authenticate
from .context import app, use_cases
from .envelope import success
from .errors import ApiError, Code
from .render import face_matches, image_detail, image_summary, match, status
from .requests import MAX_ID, RequestTypes, form_body

api = Blueprint("api", __name__, url_prefix="/api/v2/face_search")
api.before_request(authenticate)
IMAGE = f"/images/<int(max={MAX_ID}):image_id>"


def types() -> RequestTypes:
    return app().request_types


def body() -> dict:
    """The request as a dict: a JSON object, or a multipart upload in the same shape."""
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
    page = types().list_query.parse(request.args)
    records, total = use_cases().gallery.page(g.key, page)
    return success([image_summary(r) for r in records], total=total, offset=page.offset, limit=page.limit)


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
    metadata = types().update_metadata.parse(body())
    update = MetadataUpdate(image_id, metadata)
    return success(image_detail(use_cases().gallery.update_metadata(g.key, update)))


@api.get(f"{IMAGE}/file")
def photo(image_id: int) -> Response:
    data, mime = use_cases().gallery.photo(g.key, image_id)
    response = Response(data, mimetype=mime)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
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
