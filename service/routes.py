"""The Face Search API v2 endpoints: parse, call a use case, render. Nothing else."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, request

from . import images, payloads, render
from .context import Services
from .envelope import success
from .errors import ApiError, Code
from .fetch import fetch_image
from .search import search

api = Blueprint("api", __name__, url_prefix="/api/v2/face_search")


def services() -> Services:
    return current_app.extensions["face_search"]


@api.before_request
def authenticate() -> None:
    auth = request.authorization
    name = auth.username if auth is not None else None
    secret = auth.password if auth is not None else None
    g.key = services().keys.authenticate(name, secret)


def photo_from(data: dict) -> bytes:
    return payloads.image_bytes(data, lambda url: fetch_image(url, services().settings.fetch))


def body() -> dict:
    raw = request.get_data(cache=True)
    try:
        parsed = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(Code.BAD_REQUEST, "the body is not valid JSON") from exc
    if parsed is None:
        raise ApiError(Code.BAD_REQUEST, "the body must be a JSON object")
    return payloads.json_object(parsed)


@api.get("/images")
def list_images() -> Response:
    offset, limit = payloads.page(request.args)
    records, total = images.list_images(services(), g.key, offset, limit)
    return success([render.image_summary(r) for r in records], total=total, offset=offset, limit=limit)


@api.post("/images")
def add_image() -> Response:
    data = body()
    if "ids" in data and "image" not in data:
        return _delete(data)  # the documented demos send the bulk delete as POST /images
    photo = photo_from(data)
    metadata = payloads.image_metadata(data, services().settings.max_metadata_bytes)
    record = images.add_image(services(), g.key, photo, metadata)
    return success(render.image_detail(record))


@api.delete("/images")
def delete_images() -> Response:
    return _delete(body())


def _delete(data: dict) -> Response:
    deleted = images.delete_images(services(), g.key, payloads.ids(data))
    return success(None, deleted=len(deleted), deleted_ids=deleted)


@api.get("/images/<int:image_id>")
def get_image(image_id: int) -> Response:
    return success(render.image_detail(images.get_image(services(), g.key, image_id)))


@api.route("/images/<int:image_id>", methods=["PUT", "POST"])
def update_image(image_id: int) -> Response:
    data = body()
    if "metadata" not in data:
        raise ApiError(Code.BAD_REQUEST, "the body needs a metadata object")
    metadata = payloads.metadata(data["metadata"], services().settings.max_metadata_bytes)
    return success(render.image_detail(images.update_metadata(services(), g.key, image_id, metadata)))


@api.get("/images/<int:image_id>/file")
def photo(image_id: int) -> Response:
    data, mime = images.photo_bytes(services(), g.key, image_id)
    response = Response(data, mimetype=mime)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@api.post("/search")
def search_images() -> Response:
    data = body()
    photo_data = photo_from(data)
    hits = search(services(), g.key, photo_data, payloads.top_k(data), payloads.threshold(data))
    return success([render.hit(h) for h in hits])


@api.get("/index")
def index_state() -> Response:
    return success(services().indexes.describe(g.key.gallery))
