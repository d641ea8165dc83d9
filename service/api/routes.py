"""The Face Search API v2 endpoints: parse into the typed request, call the use case, render."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, request

from ..core import images, search
from ..core.requests import MetadataUpdate
from .auth import authenticate, services
from .envelope import success
from .errors import ApiError, Code
from .render import face_matches, image_detail, image_summary, match, status
from .requests import MAX_ID, RequestTypes, form_body

api = Blueprint("api", __name__, url_prefix="/api/v2/face_search")
api.before_request(authenticate)
IMAGE = f"/images/<int(max={MAX_ID}):image_id>"


def types() -> RequestTypes:
    return current_app.extensions["face_search.requests"]


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
    records, total = images.list_images(services(), g.key, page)
    return success([image_summary(r) for r in records], total=total, offset=page.offset, limit=page.limit)


@api.post("/images")
def add_image() -> Response:
    data = body()
    if "ids" in data and "image" not in data:
        return _delete(data)  # the documented demos send the bulk delete as POST /images
    return success(image_detail(images.add_image(services(), g.key, types().add_image.parse(data))))


@api.delete("/images")
def delete_images() -> Response:
    return _delete(body())


def _delete(data: dict) -> Response:
    deleted = images.delete_images(services(), g.key, types().delete_images.parse(data))
    return success(None, deleted=len(deleted), deleted_ids=deleted)


@api.get(IMAGE)
def get_image(image_id: int) -> Response:
    return success(image_detail(images.get_image(services(), g.key, image_id)))


@api.route(IMAGE, methods=["PUT", "POST"])
def update_image(image_id: int) -> Response:
    metadata = types().update_metadata.parse(body())
    update = MetadataUpdate(image_id, metadata)
    return success(image_detail(images.update_metadata(services(), g.key, update)))


@api.get(f"{IMAGE}/file")
def photo(image_id: int) -> Response:
    data, mime = images.photo_bytes(services(), g.key, image_id)
    response = Response(data, mimetype=mime)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@api.post("/search")
def search_images() -> Response:
    query = types().search.parse(body())
    if query.face == "all":
        return success([face_matches(a) for a in search.search_each_face(services(), g.key, query)])
    return success([match(m) for m in search.search(services(), g.key, query)])


@api.get("/index")
def index_state() -> Response:
    return success(status(services().indexes.status(g.key.gallery)))
