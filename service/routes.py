"""The Face Search API v2 endpoints: parse, call a use case, render. Nothing else."""

from __future__ import annotations

import json
import math
import time

from flask import Blueprint, Response, current_app, g, request

from . import images, payloads, render
from .context import Services
from .envelope import success
from .errors import ApiError, Code
from .fetch import fetch_image
from .openapi import checked_body, checked_query
from .search import FaceFilter, query_faces, search, search_faces
from .throttle import Limits

api = Blueprint("api", __name__, url_prefix="/api/v2/face_search")


def services() -> Services:
    return current_app.extensions["face_search"]


@api.before_request
def authenticate() -> None:
    """Credentials (slowed down after repeated failures), then the rate limit, then the quota."""
    auth = request.authorization
    limits: Limits = current_app.extensions["face_search.limits"]
    address = request.remote_addr or "unknown"
    pause = limits.logins.delay(address)
    if pause:
        time.sleep(pause)
    try:
        key = services().keys.authenticate(auth.username if auth else None, auth.password if auth else None)
    except ApiError:
        limits.logins.failed(address)
        raise
    limits.logins.succeeded(address)
    wait = limits.rate.acquire(key.name)
    if wait:
        retry = str(max(1, math.ceil(wait)))
        raise ApiError(Code.OUT_OF_REQUESTS, "rate limit exceeded; retry later", headers={"Retry-After": retry})
    services().keys.charge(key)
    g.key = key


def photo_from(data: dict) -> bytes:
    return payloads.image_bytes(data, lambda url: fetch_image(url, services().settings.fetch))


def body() -> dict:
    """The request as a dict: a JSON object, or a multipart upload in the same shape, checked
    against the endpoint's documented body (service/openapi.py)."""
    if request.mimetype == "multipart/form-data":
        return checked_body(request.endpoint, payloads.form_body(request.form, request.files))
    raw = request.get_data(cache=True)
    try:
        parsed = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(Code.BAD_REQUEST, "the body is not valid JSON") from exc
    if parsed is None:
        raise ApiError(Code.BAD_REQUEST, "the body must be a JSON object")
    return checked_body(request.endpoint, payloads.json_object(parsed))


@api.get("/images")
def list_images() -> Response:
    offset, limit = payloads.page(checked_query(request.endpoint, request.args))
    records, total = images.list_images(services(), g.key, offset, limit)
    return success([render.image_summary(r) for r in records], total=total, offset=offset, limit=limit)


@api.post("/images")
def add_image() -> Response:
    data = body()
    if "ids" in data and "image" not in data:
        return _delete(data)  # the documented demos send the bulk delete as POST /images
    photo = photo_from(data)
    limits = services().settings
    metadata = payloads.image_metadata(data, limits.max_metadata_bytes, limits.max_metadata_depth)
    record = images.add_image(services(), g.key, photo, metadata)
    return success(render.image_detail(record))


@api.delete("/images")
def delete_images() -> Response:
    return _delete(body())


def _delete(data: dict) -> Response:
    deleted = images.delete_images(services(), g.key, payloads.ids(data, services().settings.max_ids))
    return success(None, deleted=len(deleted), deleted_ids=deleted)


@api.get("/images/<int(max=9223372036854775807):image_id>")
def get_image(image_id: int) -> Response:
    return success(render.image_detail(images.get_image(services(), g.key, image_id)))


@api.route("/images/<int(max=9223372036854775807):image_id>", methods=["PUT", "POST"])
def update_image(image_id: int) -> Response:
    data = body()
    if "metadata" not in data:
        raise ApiError(Code.BAD_REQUEST, "the body needs a metadata object")
    limits = services().settings
    metadata = payloads.metadata(data["metadata"], limits.max_metadata_bytes, limits.max_metadata_depth)
    return success(render.image_detail(images.update_metadata(services(), g.key, image_id, metadata)))


@api.get("/images/<int(max=9223372036854775807):image_id>/file")
def photo(image_id: int) -> Response:
    data, mime = images.photo_bytes(services(), g.key, image_id)
    response = Response(data, mimetype=mime)
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@api.post("/search")
def search_images() -> Response:
    data = body()
    top_k, threshold = payloads.top_k(data, services().settings.max_top_k), payloads.threshold(data)
    face = payloads.face_choice(data)
    stored = FaceFilter(*payloads.stored_face_limits(data))
    photo_data = photo_from(data)
    if face == "all":
        answers = search_faces(services(), g.key, query_faces(services(), photo_data), top_k, threshold, stored)
        return success([render.face_hits(a) for a in answers])
    return success([render.hit(h) for h in search(services(), g.key, photo_data, top_k, threshold, stored)])


@api.get("/index")
def index_state() -> Response:
    return success(services().indexes.describe(g.key.gallery))
