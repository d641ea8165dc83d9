"""face_search_client reads each answer as the OpenAPI document describes it: every field of
the client's types is in the document's schema of that answer, under its JSON name, with the
same JSON type, and every field the document requires is read by the client."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

import face_search_client as client
from face_search_client.client import JSON, REST, Box
from service.api.errors import Code
from service.api.openapi import document

# each type of the client, and the document's schema of the answer (or the part of one) it reads
READS = {
    client.Face: "FaceOut",
    client.ImageSummary: "ImageSummary",
    client.Image: "ImageDetail",
    client.Hit: "Hit",
    client.FaceMatches: "FaceHits",
    client.Page: "ImagePage",
    client.Deleted: "DeleteAnswer",
    client.IndexState: "IndexState",
}
SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean"}
ENVELOPE = {"status_code", "message", "errorCode", "error_message", "invalidCode", "invalidMessage"}


def client_type(hint: Any) -> Any:
    """A client field's type as JSON Schema names it: a scalar's type, an array of its items, a
    reference to the schema the client type reads."""
    if hint in SCALARS:
        return SCALARS[hint]
    if hint == Box:
        return ("array", "number")
    if typing.get_origin(hint) is list:
        return ("array", client_type(typing.get_args(hint)[0]))
    if typing.get_origin(hint) is dict:
        return "object"
    if hint in READS:
        return f"#/components/schemas/{READS[hint]}"
    raise AssertionError(f"the test does not know the client's type {hint}")


def documented_type(schema: dict) -> Any:
    if "$ref" in schema:
        return schema["$ref"]
    if schema.get("type") == "array":
        return ("array", documented_type(schema["items"]))
    return schema["type"]


@pytest.mark.parametrize("kind", list(READS), ids=lambda kind: kind.__name__)
def test_the_client_reads_each_answer_as_documented(kind: type) -> None:
    schema = document()["components"]["schemas"][READS[kind]]
    properties = schema["properties"]
    hints = typing.get_type_hints(kind)
    read = set()
    for field in dataclasses.fields(kind):
        if field.metadata.get(REST):
            continue
        name = field.metadata.get(JSON, field.name)
        assert name in properties, f"{kind.__name__}.{field.name} reads {name!r}, which the document lacks"
        assert client_type(hints[field.name]) == documented_type(properties[name]), (kind.__name__, name)
        read.add(name)
    rest = any(field.metadata.get(REST) for field in dataclasses.fields(kind))
    nothing = {name for name, field in properties.items() if field.get("type") == "null"}  # a delete's result
    unread = set(schema.get("required", ())) - read - ENVELOPE - nothing
    assert not unread or rest, f"{kind.__name__} does not read {sorted(unread)}"


def test_every_answer_a_client_method_returns_is_checked() -> None:
    returned = {
        typing.get_type_hints(method)["return"]
        for name, method in vars(client.FaceSearchClient).items()
        if callable(method) and not name.startswith("_")
    }
    named = {typing.get_args(hint)[0] if typing.get_args(hint) else hint for hint in returned}  # list[X], Iterator[X]
    assert named - {bytes} <= set(READS)


def test_the_codes_the_client_acts_on_are_the_servers() -> None:
    assert (client.client.NO_FACE, client.client.OUT_OF_REQUESTS) == (Code.NO_FACE, Code.OUT_OF_REQUESTS)
