"""The OpenAPI 3.1 document of the whole service.

Every operation is listed once in ``OPERATIONS`` with its request (by the name of its
definition in service/api/requests.py, the same one the route validates with) and its
answer type (service/api/responses.py), so what the document promises and what the
server accepts come from one definition, built for the configured limits. pydantic's
JSON Schema is draft 2020-12, the dialect of OpenAPI 3.1, so it goes into the document as
it is. ``/docs`` serves Swagger UI from the swagger-ui-py wheel: no CDN, no build step.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from functools import cache, reduce
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from flask import Blueprint, Response, abort, jsonify, send_from_directory
from pydantic import TypeAdapter

from ..core.config import DEFAULT_LIMITS, Limits
from . import responses as s
from .context import app
from .envelope import CODE_FIELDS
from .errors import ALSO_HTTP, HTTP_STATUS, MESSAGES, Code, codes_table
from .requests import MAX_ID, RequestTypes, request_types
from .routes import API, V1, V1_ROUTES
from .web import STATIC

DOCUMENT_PATH = "/api/v2/openapi.json"
_REF = "#/components/schemas/{model}"

# every API answer may be one of these: credentials, quota and rate limit, the server's own trouble
_ALWAYS = (Code.BAD_CREDENTIALS, Code.OUT_OF_REQUESTS, Code.STORAGE_ERROR, Code.INTERNAL)
_PHOTO = (Code.NO_CONTENT, Code.URL_UNAVAILABLE, Code.NO_FACE, Code.BAD_FORMAT_TYPE, Code.BAD_REQUEST, Code.TOO_LARGE)
_BY_ID = (Code.NOT_FOUND, Code.NO_ROUTE)
_LINKED = (
    "Served to the key's owner (Basic auth), or to anyone holding the signed link an answer gave (its `gallery`, "
    "`expires` and `signature`), without credentials until it expires; an expired, altered or foreign link is "
    "code 14 (403). Through a link the answer may be cached until the link expires and embedded by any site "
    "(`Cross-Origin-Resource-Policy: cross-origin`)."
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    endpoint: str  # the Flask endpoint serving it
    summary: str
    answer: Any  # the JSON answer's type, or a media type for other answers
    codes: tuple[Code, ...] = ()
    body: tuple[str, ...] = ()  # the JSON body: its definitions in RequestTypes (several: any of them)
    upload: str | None = None  # the multipart/form-data form of the body
    query: str | None = None
    tag: str = "images"
    secured: bool = True
    linked: bool = False  # a signed link opens it too (service/core/links.py)
    description: str = ""


OPERATIONS = (
    Operation(
        "get", f"{API}/images", "api.list_images", "List the key's images, oldest first", s.ImagePage,
        (Code.BAD_REQUEST,), query="list_query",
    ),
    Operation(
        "post", f"{API}/images", "api.add_image", "Add a photo (or, with ids, delete images)",
        s.ImageAnswer | s.DeleteAnswer, (*_PHOTO, Code.PACK_MISMATCH), ("add_image", "delete_images"),
        "add_image_upload",
        description="Stores the photo and indexes every face in it, so a group photo is found by each of its "
        "people. No face: code 3 and nothing is stored. A body with `ids` and no `image` deletes those images, "
        "as the documented demos send it.",
    ),
    Operation(
        "delete", f"{API}/images", "api.delete_images", "Delete images by id", s.DeleteAnswer,
        (Code.BAD_REQUEST, Code.TOO_LARGE), ("delete_images",),
        description="Deletes the images with their faces, vectors, files and metadata; ids that are unknown or "
        "belong to another key are skipped. No later list or search shows them.",
    ),
    Operation("get", f"{API}/images/{{image_id}}", "api.get_image", "Read one image", s.ImageAnswer, _BY_ID),
    *(
        Operation(
            method, f"{API}/images/{{image_id}}", "api.update_image",
            "Replace an image's metadata, move it to another collection, or both", s.ImageAnswer,
            (*_BY_ID, Code.BAD_REQUEST, Code.TOO_LARGE), ("update_metadata",),
        )
        for method in ("put", "post")
    ),
    Operation(
        "get", f"{API}/collections", "api.list_collections", "The key's collections with their images and faces",
        s.CollectionsAnswer,
        description="Every collection of the key's gallery that holds an image, by name; images added without a "
        "collection are in `default`.",
    ),
    Operation(
        "delete", f"{API}/collections/{{name}}", "api.delete_collection", "Delete a collection and its images",
        s.CollectionDeleteAnswer, (Code.BAD_REQUEST,),
        description="Deletes every image of the collection with its faces, vectors and files, a batch at a time, "
        "then compacts the index; `deleted` counts the images (0: no such collection). Interrupted, it leaves "
        "the rest of the collection: call it again.",
    ),
    Operation(
        "get", f"{API}/images/{{image_id}}/file", "api.photo", "The stored photo's bytes (an image's url)", "image/*",
        (*_BY_ID, Code.BAD_REQUEST, Code.BAD_LINK), query="link_query", linked=True, description=_LINKED,
    ),
    Operation(
        "get", f"{API}/images/{{image_id}}/thumbnail", "api.thumbnail",
        "A small JPEG of the stored photo (an image's thumbnail_url)", "image/jpeg",
        (*_BY_ID, Code.BAD_REQUEST, Code.BAD_LINK), query="link_query", linked=True,
        description=_LINKED + " Made on the first request and kept beside the photo.",
    ),
    Operation(
        "post", f"{API}/search", "api.search_images", "Search the gallery with a photo", s.SearchAnswer,
        (*_PHOTO, Code.PACK_MISMATCH), ("search",), "search_upload",
        description="Detects the faces of the query photo and answers the key's images holding a matching face, "
        "best first, one entry per image, with the score and box of that image's best-matching face. "
        "`collection`, `filter`, `created_after` and `created_before` narrow it to some of the images, inside "
        "the index (docs/filters.md). No face in the query: code 3. Empty gallery or no match: an empty list.",
    ),
    Operation("get", f"{API}/index", "api.index_state", "The gallery's vector index", s.IndexAnswer, tag="operations"),
    Operation("get", "/healthz", "health.healthz", "The process is up", s.Health, tag="operations", secured=False),
    Operation(
        "get", "/readyz", "health.readyz", "Models loaded, storage answering, indexes loaded (503 otherwise)", s.Health,
        tag="operations", secured=False,
    ),
    Operation(
        "get", "/metrics", "metrics.scrape", "Prometheus metrics", "text/plain", tag="operations", secured=False
    ),
    Operation(
        "get", DOCUMENT_PATH, "docs.document_json", "This document", dict, tag="operations", secured=False
    ),
)  # fmt: skip


def _v1_operations() -> tuple[Operation, ...]:
    """The vendor's v1 paths (routes.V1_ROUTES), each documented as the v2 operation whose view
    serves it; edit_metadata, which takes the image's id in the body, as its own."""
    served = {op.endpoint: op for op in OPERATIONS}
    edit = Operation(
        "post",
        "",
        "",
        "Replace an image's metadata, the image named by image_id in the body",
        s.ImageAnswer,
        (Code.NOT_FOUND, Code.BAD_REQUEST, Code.TOO_LARGE),
        ("edit_metadata",),
    )
    return tuple(
        replace(
            served.get(f"api.{view.__name__}", edit), method=method.lower(), path=V1 + path,
            endpoint=f"v1.{view.__name__}", tag="v1",
        )
        for method, path, view in V1_ROUTES
    )  # fmt: skip


OPERATIONS += _v1_operations()

# -- the document ---------------------------------------------------------------------------


class _Components:
    """Schemas in ``components/schemas``, referenced from the operations."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict] = {}

    def ref(self, kind: Any, mode: Literal["validation", "serialization"]) -> dict:
        schema = TypeAdapter(kind).json_schema(ref_template=_REF, mode=mode)
        self.schemas.update(schema.pop("$defs", {}))
        name = getattr(kind, "__name__", None)
        if name and schema.get("type") == "object" and name[:1].isupper():
            self.schemas[name] = schema
            return {"$ref": _REF.format(model=name)}
        return schema

    def sorted(self) -> dict[str, dict]:
        return dict(sorted(self.schemas.items()))


def _package_version() -> str:
    try:
        return version("face-search")
    except PackageNotFoundError:
        return "0"


_REQUEST_ID = {"$ref": "#/components/headers/X-Request-ID"}


def _refusals(op: Operation) -> dict[str, dict]:
    codes = (*op.codes, *_ALWAYS) if op.secured else ()
    by_status: dict[int, list[Code]] = {}
    for code in sorted(set(codes)):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
        if code in ALSO_HTTP:
            by_status.setdefault(ALSO_HTTP[code], []).append(code)
    answers = {}
    for status, listed in sorted(by_status.items()):
        headers: dict[str, Any] = {"X-Request-ID": _REQUEST_ID}
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds to wait (rate limit only).",
                "schema": {"type": "integer"},
            }
        answers[str(status)] = {
            "description": "; ".join(f"code {int(c)}: {MESSAGES[c]}" for c in listed),
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Refusal")}}},
        }
    return answers


def _success(op: Operation, parts: _Components) -> dict:
    if isinstance(op.answer, str):
        content = {op.answer: {"schema": {"type": "string", "format": "binary"}}}
    else:
        content = {"application/json": {"schema": parts.ref(op.answer, "serialization")}}
    answer = {"description": "Success", "headers": {"X-Request-ID": _REQUEST_ID}, "content": content}
    answers = {"200": answer}
    if op.endpoint == "health.readyz":
        answers["503"] = {**answer, "description": "Not ready: see checks"}
    return answers


def _schema_of(types: RequestTypes, name: str) -> Any:
    found = getattr(types, name)
    return getattr(found, "schema", found)  # a Definition, or a type shown only in the document


def body_type(types: RequestTypes, op: Operation) -> Any:
    """The operation's JSON body as one type (a union where it takes several)."""
    return reduce(lambda a, b: a | b, (_schema_of(types, name) for name in op.body))


def _parameters(op: Operation, types: RequestTypes) -> list[dict]:
    parameters = []
    if "{image_id}" in op.path:
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        parameters.append({"name": "image_id", "in": "path", "required": True, "schema": schema})
    if "{name}" in op.path:
        schema = TypeAdapter(_schema_of(types, "collection_path")).json_schema(mode="validation")
        parameters.append({"name": "name", "in": "path", "required": True, "schema": schema})
    if op.query is not None:
        query: dict[str, Any] = TypeAdapter(_schema_of(types, op.query)).json_schema(mode="validation")
        for name, field in query["properties"].items():
            parameters.append({"name": name, "in": "query", "required": False, "schema": field})
    return parameters


def _operation(op: Operation, operation_id: str, parts: _Components, types: RequestTypes) -> dict:
    spec: dict[str, Any] = {
        "operationId": operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {**_success(op, parts), **_refusals(op)},
    }
    if op.description:
        spec["description"] = op.description
    if not op.secured:
        spec["security"] = []
    elif op.linked:
        spec["security"] = [{"basicAuth": []}, {"photoLink": []}]
    if parameters := _parameters(op, types):
        spec["parameters"] = parameters
    if op.body:
        content = {"application/json": {"schema": parts.ref(body_type(types, op), "validation")}}
        if op.upload is not None:
            encoding = {"metadata": {"contentType": "application/json"}}
            upload = parts.ref(_schema_of(types, op.upload), "validation")
            content["multipart/form-data"] = {"schema": upload, "encoding": encoding}
        spec["requestBody"] = {"required": True, "content": content}
    return spec


@cache
def document(limits: Limits = DEFAULT_LIMITS) -> dict:
    """The whole document for these limits, built once per process."""
    types = request_types(limits)
    parts = _Components()
    parts.ref(s.Refusal, "serialization")
    paths: dict[str, dict] = {}
    shared = {op.endpoint for op in OPERATIONS if sum(o.endpoint == op.endpoint for o in OPERATIONS) > 1}
    for op in OPERATIONS:
        blueprint, view = op.endpoint.split(".")
        name = (f"v1_{view}" if blueprint == "v1" else view) + (f"_{op.method}" if op.endpoint in shared else "")
        paths.setdefault(op.path, {})[op.method] = _operation(op, name, parts, types)
    (code, message), *others = CODE_FIELDS
    description = (
        "A self-hosted face search service compatible with the Face Search API v2. Every API answer is the "
        f"envelope `{{result, {code}, {message}}}`, and carries the same code and message as "
        + " and ".join(f"`{a}`/`{b}`" for a, b in others)
        + " too, the names of the vendor's other docs (FACE_SEARCH_CODE_ALIASES=0 leaves them out). "
        "Authenticate with HTTP Basic `api_key:api_secret`; each key owns its own gallery. The vendor's v1 "
        f"paths under `{V1}` serve the same operations.\n\n" + codes_table()
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Face Search API v2", "version": _package_version(), "description": description},
        "tags": [
            {"name": "images", "description": "The key's gallery: add, list, search, update, delete."},
            {"name": "operations", "description": "Index state, health, metrics, this document."},
            {"name": "v1", "description": "The vendor's earlier paths, for deployed clients: the same operations."},
        ],
        "security": [{"basicAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "photoLink": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "signature",
                    "description": "A signed link from an answer's url or thumbnail_url, with its gallery and expires.",
                },
            },
            "headers": {
                "X-Request-ID": {
                    "description": "The request's id, as in the server's log line (echoed when the client sent one).",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
            "schemas": parts.sorted(),
        },
    }


# -- serving it ----------------------------------------------------------------------------

docs = Blueprint("docs", __name__)
_SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")


def _swagger_dir() -> Path:
    """Swagger UI's files inside the installed swagger-ui-py wheel (not imported: only its files are used)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        abort(404)
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@docs.get(DOCUMENT_PATH)
def document_json() -> Response:
    return jsonify(document(app().settings.limits))


@docs.get("/docs")
def page() -> Response:
    return send_from_directory(STATIC, "docs.html")


@docs.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    if name not in _SWAGGER_FILES:
        abort(404)
    return send_from_directory(_swagger_dir(), name, max_age=86400)
