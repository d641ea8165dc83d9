"""The OpenAPI 3.1 document of the whole service, derived from the routes' declarations.

Every operation is declared once, where its route is (service/api/operations.py), with its
request types (service/api/requests.py, the same ones the route reads with) and its answer
type (service/api/responses.py), so what the document promises and what the server accepts
come from one definition; the limits it states are the configured ones. Each code's HTTP
status and message come from its record (service/api/errors.py). pydantic's JSON Schema is
draft 2020-12, the dialect of OpenAPI 3.1, so it goes into the document as it is. ``/docs``
serves Swagger UI from the swagger-ui-py wheel: no CDN, no build step.
"""

from __future__ import annotations

import importlib.util
import operator
from functools import cache, reduce
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from flask import Response, abort, jsonify, send_from_directory
from pydantic import TypeAdapter

from ..core.config import DEFAULT_LIMITS, Limits
from .context import app
from .envelope import CODE_FIELDS
from .errors import CODES, Code, codes_table
from .health import health
from .metrics import metrics
from .operations import Operation, Routes
from .paths import DOCUMENT, V1
from .requests import LinkQuery, OneOf, limits_in_force
from .responses import Refusal, enveloped
from .routes import api, v1
from .web import STATIC, page

_REF = "#/components/schemas/{model}"

# every API answer may be one of these: credentials, quota and rate limit, the server's own trouble
_ALWAYS = (Code.BAD_CREDENTIALS, Code.OUT_OF_REQUESTS, Code.STORAGE_ERROR, Code.INTERNAL)

docs = Routes("docs", __name__, tag="operations", secured=False, enveloped=False)


@docs.operation("GET", DOCUMENT, answer=dict, summary="This document")
def document_json() -> Response:
    return jsonify(document(app().settings.limits))


DOCUMENTED = (api, health, metrics, docs, v1)  # the blueprints whose every route is an operation


def operations() -> tuple[Operation, ...]:
    return tuple(op for routes in DOCUMENTED for op in routes.operations)


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
        for status in CODES[code].http_statuses():
            by_status.setdefault(status, []).append(code)
    answers = {}
    for status, listed in sorted(by_status.items()):
        headers: dict[str, Any] = {"X-Request-ID": _REQUEST_ID}
        if status == 429:
            headers["Retry-After"] = {
                "description": "Seconds to wait (rate limit only).",
                "schema": {"type": "integer"},
            }
        answers[str(status)] = {
            "description": "; ".join(f"code {int(c)}: {CODES[c].message}" for c in listed),
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Refusal")}}},
        }
    return answers


def answer_type(op: Operation) -> Any:
    """The whole JSON answer's type: the view's answer, in the envelope where it goes in one
    (a union of answers, each in it)."""
    if not op.enveloped:
        return op.answer
    answers = getattr(op.answer, "__args__", (op.answer,))
    return reduce(operator.or_, map(enveloped, answers))


def _success(op: Operation, parts: _Components) -> dict:
    if isinstance(op.answer, str):
        content = {op.answer: {"schema": {"type": "string", "format": "binary"}}}
    else:
        content = {"application/json": {"schema": parts.ref(answer_type(op), "serialization")}}
    answer = {"description": "Success", "headers": {"X-Request-ID": _REQUEST_ID}, "content": content}
    answers = {"200": answer}
    answers |= {str(status): {**answer, "description": text} for status, text in op.also.items()}
    return answers


def body_type(op: Operation) -> Any:
    """The operation's JSON body as one type (a union where it takes several)."""
    models: tuple[Any, ...] = op.body.models if isinstance(op.body, OneOf) else (op.body,)
    return reduce(operator.or_, models)


def _parameters(op: Operation) -> list[dict]:
    parameters = []
    for name, kind in op.parameters.items():
        schema = TypeAdapter(kind).json_schema(mode="validation")
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    for query in (op.query, LinkQuery if op.linked else None):
        if query is not None:
            for name, field in TypeAdapter(query).json_schema(mode="validation")["properties"].items():
                parameters.append({"name": name, "in": "query", "required": False, "schema": field})
    return parameters


def _operation(op: Operation, operation_id: str, parts: _Components) -> dict:
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
    if parameters := _parameters(op):
        spec["parameters"] = parameters
    if op.body is not None:
        content = {"application/json": {"schema": parts.ref(body_type(op), "validation")}}
        if op.upload is not None:
            encoding = {"metadata": {"contentType": "application/json"}}
            upload = parts.ref(op.upload, "validation")
            content["multipart/form-data"] = {"schema": upload, "encoding": encoding}
        spec["requestBody"] = {"required": True, "content": content}
    return spec


@cache
def document(limits: Limits = DEFAULT_LIMITS) -> dict:
    """The whole document for these limits, built once per process."""
    with limits_in_force(limits):
        return _document()


def _document() -> dict:
    parts = _Components()
    parts.ref(Refusal, "serialization")
    paths: dict[str, dict] = {}
    declared = operations()
    shared = {op.endpoint for op in declared if sum(o.endpoint == op.endpoint for o in declared) > 1}
    for op in declared:
        blueprint, view = op.endpoint.split(".")
        name = (f"v1_{view}" if blueprint == "v1" else view) + (f"_{op.method}" if op.endpoint in shared else "")
        paths.setdefault(op.path, {})[op.method] = _operation(op, name, parts)
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

_SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")


def _swagger_dir() -> Path:
    """Swagger UI's files inside the installed swagger-ui-py wheel (not imported: only its files are used)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        abort(404)
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@docs.get("/docs", endpoint="page")
def docs_page() -> Response:
    return page(STATIC / "docs.html")


@docs.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    if name not in _SWAGGER_FILES:
        abort(404)
    return send_from_directory(_swagger_dir(), name, max_age=86400)
