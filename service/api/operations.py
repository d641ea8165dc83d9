"""Routes declared once: each is an ``Operation`` of a ``Routes`` blueprint, from which both
the Flask route and the OpenAPI operation (service/api/openapi.py) are made.

A declaration names the method and path, the request the route reads (a body, a query
string: service/api/requests.py's types), the answer it gives (service/api/responses.py's),
the codes it may answer besides those every secured route may, and what the document says of
it. The route it makes reads the request into the use case's typed request, hands it to the
view with the path's parameters, and sends the view's answer in the envelope::

    @api.operation("GET", "/images", query=ListQuery, answer=ImagePage, codes=(Code.BAD_REQUEST,),
                   summary="List the key's images, oldest first", alias="GET /get_all_images")
    def list_images(query: core.Page) -> ImagePage: ...

``alias`` ("METHOD /path") serves the same view on the blueprint's ``aliases`` (the vendor's
v1 paths), documented as its own operation there. The view's annotations type the path's
parameters in the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, get_type_hints

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from .context import app
from .envelope import success
from .errors import ApiError, Code
from .requests import OneOf, form_body, read

Request = type | OneOf  # a request type of service/api/requests.py, or a choice of them


@dataclass(frozen=True)
class Operation:
    """One method on one path, as the OpenAPI document shows it."""

    method: str  # lower case, as OpenAPI writes it
    path: str  # the OpenAPI path: the blueprint's prefix, parameters as {name}
    endpoint: str  # the Flask endpoint serving it
    summary: str
    answer: Any  # the JSON answer's type (enveloped or not), or the media type of another answer
    enveloped: bool = True  # the answer goes in the envelope, and ``answer`` is what the view returns
    codes: tuple[Code, ...] = ()
    body: Request | None = None  # the JSON body
    body_required: bool = True  # False: no body at all reads as ``{}``
    upload: type | None = None  # the multipart/form-data form of the body
    query: type | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)  # the path's parameters and their types
    tag: str = "images"
    secured: bool = True
    linked: bool = False  # a signed link opens it too (service/core/links.py), read before the view by routes.admit
    description: str = ""
    also: Mapping[int, str] = field(default_factory=dict)  # other statuses of the success's answer


_PARAMETER = re.compile(r"<(?:[^>:]*:)?(\w+)>")  # a Flask rule's parameter: <name> or <converter:name>


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/images/<int(max=9):image_id>`` is ``/images/{image_id}``."""
    return re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule)


def request_body() -> dict[str, Any]:
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


def query_args() -> dict[str, Any]:
    """The query string as a dict; a name given more than once is the list of its values
    (``collection=a&collection=b``)."""
    return {name: values if len(values) > 1 else values[0] for name, values in request.args.lists()}


class Routes(Blueprint):
    """A blueprint whose routes are declared with ``operation``; ``operations`` lists them.

    ``enveloped``: its views return an answer of service/api/responses.py, sent in the
    envelope (a view may still return a ``Response`` of its own, a photo's bytes);
    ``secured``: it needs a key; ``tag``: its operations' default tag in the document.
    """

    def __init__(
        self,
        name: str,
        import_name: str,
        url_prefix: str = "",
        *,
        tag: str,
        secured: bool = True,
        enveloped: bool = True,
        aliases: Routes | None = None,
    ) -> None:
        super().__init__(name, import_name, url_prefix=url_prefix or None)
        self.prefix, self.tag, self.secured, self.enveloped, self.aliases = url_prefix, tag, secured, enveloped, aliases
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str | tuple[str, ...],
        path: str,
        *,
        summary: str,
        answer: Any,
        codes: tuple[Code, ...] = (),
        body: Request | None = None,
        body_required: bool = True,
        upload: type | None = None,
        query: type | None = None,
        tag: str | None = None,
        linked: bool = False,
        description: str = "",
        also: Mapping[int, str] | None = None,
        alias: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare the decorated view as the route ``method path`` (several methods: one
        operation each) and, with ``alias``, as that route of ``aliases``."""
        methods = (method,) if isinstance(method, str) else method

        def declare(view: Callable[..., Any]) -> Callable[..., Any]:
            serve = self._serving(view, body, query, body_required)
            hints = get_type_hints(view, include_extras=True)
            spec = Operation(
                method="", path="", endpoint="", summary=summary, answer=answer, enveloped=self.enveloped,
                codes=codes, body=body, body_required=body_required, upload=upload, query=query, tag=tag or self.tag,
                secured=self.secured, linked=linked, description=description, also=also or {},
                parameters={name: hints[name] for name in _PARAMETER.findall(path)},
            )  # fmt: skip
            self._add(serve, spec, methods, path, spec.tag)
            if alias is not None and self.aliases is not None:
                verb, rule = alias.split(" ")
                self.aliases._add(serve, spec, (verb,), rule, self.aliases.tag)
            return view

        return declare

    def _add(self, serve: Callable[..., Any], spec: Operation, methods: tuple[str, ...], rule: str, tag: str) -> None:
        self.add_url_rule(rule, serve.__name__, serve, methods=list(methods))
        path, endpoint = openapi_path(self.prefix + rule), f"{self.name}.{serve.__name__}"
        self.operations += [replace(spec, method=m.lower(), path=path, endpoint=endpoint, tag=tag) for m in methods]

    def _serving(
        self, view: Callable[..., Any], body: Request | None, query: type | None, body_required: bool
    ) -> Callable[..., ResponseReturnValue]:
        """The Flask view: the request read as declared, the view's answer sent."""

        def serve(**parameters: Any) -> ResponseReturnValue:
            limits = app().settings.limits
            if query is not None:
                parameters["query"] = read(query, query_args(), limits)
            if body is not None:
                sent = request_body() if body_required or request.get_data(cache=True) else {}
                parameters["body"] = read(body, sent, limits)
            answer = view(**parameters)
            return success(answer) if self.enveloped and not isinstance(answer, Response) else answer

        serve.__name__ = serve.__qualname__ = view.__name__
        serve.__doc__ = view.__doc__
        return serve
