"""Each endpoint's request as one typed definition: it validates the request, it is the schema
the OpenAPI document shows, and it hands the use case its typed request.

The definitions are built for the running ``Limits`` (``request_types``), so a configured
maximum is both what the server enforces and what the document states. JSON types are
strict (``true`` is not a number, ``"5"`` not an integer) and unknown fields are ignored.
A refusal is code 7 and names the field, except for the rules that carry their own code
(``CODES``): no image is code 1, an unknown or mismatched ``format_type`` code 6.
"""

# no ``from __future__ import annotations``: the types are built inside ``request_types``,
# and pydantic reads their annotations as objects, not as names to look up later.

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal, Required

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from ..core import requests as core
from ..core.config import DEFAULT_LIMITS, Limits
from ..core.errors import InvalidRequest
from ..core.filters import collection_name, scope_of
from ..core.metadata import RESERVED_KEYS, checked_metadata
from .errors import ApiError, Code

FORMAT_TYPES = ("base64", "url", "file")
MAX_ID = 2**63 - 1
CODES = {"no_content": Code.NO_CONTENT, "format_type": Code.BAD_FORMAT_TYPE}  # custom error type -> its code
STRICT = ConfigDict(strict=True, extra="allow")  # JSON types as sent; unknown fields are ignored


def photo_of(body: dict) -> core.Photo:
    """The one photo a request carries; ``format_type``, when given, must name the form sent."""
    declared, image = body.get("format_type"), body.get("image")
    if declared is not None and declared not in FORMAT_TYPES:
        raise PydanticCustomError("format_type", f"format_type must be one of {', '.join(FORMAT_TYPES)}")
    if image is None:
        raise PydanticCustomError("no_content", "the body has no image")
    sent = [form for form in FORMAT_TYPES if form in image]
    if len(sent) > 1:
        raise PydanticCustomError("format_type", "send the image one way only: base64, url or file")
    if declared is not None and sent and declared != sent[0]:
        raise PydanticCustomError("format_type", f"format_type is {declared!r} but the image was sent as {sent[0]}")
    if not sent:
        raise PydanticCustomError("no_content", "image.base64 is missing")
    if sent[0] == "file":
        if not isinstance(image["file"], bytes):
            raise PydanticCustomError("format_type", "format_type file is a multipart/form-data upload, not JSON")
        if not image["file"]:
            raise PydanticCustomError("no_content", "the uploaded image file is empty")
        return core.Photo(data=image["file"])
    if sent[0] == "url":
        return core.Photo(url=image["url"])
    return core.Photo(base64=image["base64"])


def _whole_number(value: Any) -> Any:
    """Query strings are text: digits only (no sign, point or exponent), then an int."""
    if isinstance(value, str):
        if not re.fullmatch(r"\d{1,19}", value.strip()):
            raise ValueError("must be a whole number")
        return int(value)
    return value


def _options(body: dict, photo: core.Photo, limits: Limits) -> core.Search:
    stored = core.FaceFilter(body.get("min_face_size") or 0.0, body.get("min_det_score") or 0.0)
    return core.Search(
        photo, body.get("top_k", limits.top_k), body.get("threshold"), body.get("face", "largest"), stored,
        scope_of(body, limits),
    )  # fmt: skip


@dataclass(frozen=True)
class Definition:
    """One request: the type the document shows, and the validator built from that same type,
    which turns a body into the use case's request."""

    schema: Any
    to_request: Callable[[dict], Any]
    adapter: TypeAdapter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked: Any = Annotated[self.schema, AfterValidator(self.to_request)]  # a type made at run time
        object.__setattr__(self, "adapter", TypeAdapter(checked))

    def parse(self, data: Mapping[str, Any] | str) -> Any:
        """``data`` as the use case's request; the refusal's code and message when it does not fit."""
        try:
            return self.adapter.validate_python(dict(data) if isinstance(data, Mapping) else data)
        except ValidationError as exc:
            raise _problem(exc) from None


@dataclass(frozen=True)
class RequestTypes:
    """The request of every endpoint that takes one, for one set of limits."""

    add_image: Definition
    delete_images: Definition
    update_metadata: Definition  # an image's new metadata, its collection, or both
    edit_metadata: Definition  # the v1 form of update_metadata, with the image's id in the body
    search: Definition
    list_query: Definition
    collection_path: Definition  # a collection's name in a path (DELETE /collections/<name>)
    link_query: Definition  # a signed photo link's query string
    add_image_upload: Any  # the multipart forms, for the document (they are parsed as the JSON bodies)
    search_upload: Any


@cache
def request_types(limits: Limits = DEFAULT_LIMITS) -> RequestTypes:
    def metadata_rules(value: dict[str, Any]) -> dict[str, Any]:
        try:
            return checked_metadata(value, limits)
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None

    Metadata = Annotated[
        dict[str, Any],
        AfterValidator(metadata_rules),
        Field(
            description=f"Any JSON object, at most {limits.max_metadata_bytes} bytes as compact UTF-8 JSON "
            f"(FACE_SEARCH_MAX_METADATA_BYTES) and {limits.max_metadata_depth} levels deep "
            f"(FACE_SEARCH_MAX_METADATA_DEPTH), without the reserved keys {', '.join(RESERVED_KEYS)}.",
            json_schema_extra={"propertyNames": {"not": {"enum": list(RESERVED_KEYS)}}},
            examples=[{"name": "Ada", "album": "team day"}],
        ),
    ]
    FormatType = Annotated[
        Any,
        Field(
            description="Optional: base64, url or file; must name the form the image was sent in "
            "(anything else is code 6).",
            examples=["base64"],
        ),
    ]
    Upload = Annotated[bytes, Field(description="The photo file (JPEG, PNG, WebP, BMP, TIFF or GIF).")]
    QueryNumber = BeforeValidator(_whole_number)
    # Collections, filters and times are read by service/core/filters.py, whose messages name the
    # problem (a list where an object is needed, an unknown operator...): the schemas below are
    # what the document shows, and the values reach that reader as they were sent.
    CollectionName = Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": limits.max_collection_chars,
                "description": f"A collection's name: 1 to {limits.max_collection_chars} characters "
                "(FACE_SEARCH_MAX_COLLECTION_CHARS), no control characters. Without one, the default collection.",
                "examples": ["wedding-2024-06-01"],
            }
        ),
    ]
    Collections = Annotated[
        Any,
        WithJsonSchema(
            {
                "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                "description": "Only images in this collection, or in any of these (docs/filters.md).",
                "examples": ["wedding-2024-06-01", ["gala", "wedding-2024-06-01"]],
            }
        ),
    ]
    FilterObject = Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "object",
                "description": "Only images whose metadata passes the filter, in the syntax of Pinecone and Chroma: "
                "$eq $ne $in $nin $gt $gte $lt $lte $exists, $and / $or over lists of such objects, dotted keys "
                f"for nested metadata (docs/filters.md). At most {limits.max_filter_bytes} bytes as JSON, "
                f"{limits.max_filter_depth} levels of $and / $or, {limits.max_filter_terms} conditions and listed "
                "values; a malformed filter is code 7, its message naming the problem.",
                "examples": [{"status": "active", "year": {"$gte": 2021}}],
            }
        ),
    ]
    Moment = Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "string",
                "description": "An ISO 8601 date or time (UTC unless it names a zone); created_after is inclusive, "
                "created_before exclusive.",
                "examples": ["2024-06-01T00:00:00Z"],
            }
        ),
    ]

    @with_config(STRICT)
    class Narrowing(TypedDict, total=False):
        """What narrows a search or a listing; without any of it, the whole gallery."""

        collection: Collections
        filter: FilterObject
        created_after: Moment
        created_before: Moment

    @with_config(STRICT)
    class ImageInput(TypedDict, total=False):
        """The photo, sent one way only: base64 or url (a file upload uses multipart/form-data)."""

        base64: Annotated[
            str,
            Field(
                description="The photo's bytes in base64 (standard or URL-safe, a data: prefix and line breaks "
                "allowed)."
            ),
        ]
        url: Annotated[str, Field(description="An http(s) URL the server downloads the photo from.")]
        metadata: Metadata | None

    @with_config(STRICT)
    class AddImage(TypedDict, total=False):
        """A photo to store; every face in it is indexed."""

        format_type: FormatType
        image: Annotated[ImageInput | None, Field(description="Required: without it the answer is code 1.")]
        metadata: Annotated[Metadata | None, Field(description="Metadata may also be sent beside the image.")]
        collection: CollectionName

    @with_config(STRICT)
    class DeleteImages(TypedDict):
        """Image ids to delete; ids that are unknown or belong to another key are skipped."""

        ids: Annotated[
            list[Annotated[int, Field(ge=1, le=MAX_ID)]],
            Field(min_length=1, max_length=limits.max_ids, description=f"At most {limits.max_ids} ids."),
        ]

    @with_config(STRICT)
    class SearchOptions(TypedDict, total=False):
        top_k: Annotated[
            int,
            Field(
                ge=1,
                le=limits.max_top_k,
                description=f"How many images to return, best first ({limits.top_k}; at most {limits.max_top_k}).",
            ),
        ]
        threshold: Annotated[
            float | None,
            Field(
                ge=-1.0,
                le=1.0,
                allow_inf_nan=False,
                description="Least cosine similarity of a match; default: the model pack's calibrated value.",
            ),
        ]
        face: Annotated[
            Literal["largest", "all"],
            Field(description="largest: search with the query's largest face; all: with each face, one list per face."),
        ]
        min_face_size: Annotated[
            float | None,
            Field(ge=0, allow_inf_nan=False, description="Only stored faces whose shorter box side is at least this."),
        ]
        min_det_score: Annotated[
            float | None,
            Field(ge=0, le=1, allow_inf_nan=False, description="Only stored faces detected with at least this score."),
        ]

    @with_config(STRICT)
    class Search(SearchOptions, Narrowing, total=False):
        """A query photo and how to search with it."""

        format_type: FormatType
        image: Annotated[ImageInput | None, Field(description="Required: without it the answer is code 1.")]

    @with_config(STRICT)
    class MetadataUpdate(TypedDict, total=False):
        """The image's new metadata, replacing the old, its new collection, or both (one at least)."""

        metadata: Metadata | None
        collection: CollectionName  # the image moves to it

    class ListQuery(TypedDict, total=False):
        """Query strings are text: offset and limit are whole numbers (digits only), the filter is
        URL-encoded JSON; ``collection`` may be given more than once."""

        offset: Annotated[int, Field(ge=0, le=MAX_ID, description="Images to skip."), QueryNumber]
        limit: Annotated[
            int, Field(ge=1, le=limits.max_page, description=f"Images to return (default {limits.page})."), QueryNumber
        ]
        collection: Collections
        filter: Annotated[
            Any,
            WithJsonSchema(
                {
                    "type": "string",
                    "description": "The filter as URL-encoded JSON (docs/filters.md).",
                    "examples": ['{"status": "active"}'],
                }
            ),
        ]
        created_after: Moment
        created_before: Moment

    @with_config(STRICT)
    class EditMetadata(TypedDict):
        """The image's new metadata, replacing the old; the image is named in the body."""

        image_id: Annotated[int, Field(ge=1, le=MAX_ID, description="The image whose metadata is replaced.")]
        metadata: Metadata | None

    class LinkQuery(TypedDict):
        """A signed link's query string, as the image's `url` and `thumbnail_url` carry it."""

        gallery: Annotated[int, Field(ge=1, le=MAX_ID, description="The image's gallery."), QueryNumber]
        expires: Annotated[int, Field(ge=0, le=MAX_ID, description="Unix seconds the link works until."), QueryNumber]
        signature: Annotated[str, Field(description="HMAC-SHA256 of the rest, base64url.")]

    class AddImageUpload(TypedDict, total=False):
        """The multipart/form-data form of adding a photo: fields other than the file are JSON."""

        image: Required[Upload]
        metadata: Metadata | None
        format_type: FormatType
        collection: CollectionName

    class SearchUpload(SearchOptions, Narrowing, total=False):
        """The multipart/form-data form of a search: fields other than the file are JSON."""

        image: Required[Upload]
        format_type: FormatType

    def add_image(body: dict) -> core.AddImage:
        image = body.get("image") or {}
        inner = image.get("metadata")
        metadata = (inner if inner is not None else body.get("metadata")) or {}
        if "collection" in body:
            return core.AddImage(photo_of(body), metadata, collection_name(body["collection"], limits))
        return core.AddImage(photo_of(body), metadata)

    def update(body: dict) -> tuple[dict[str, Any] | None, str | None]:
        if "metadata" not in body and "collection" not in body:
            raise ValueError("give the image's new metadata, its new collection, or both")
        collection = collection_name(body["collection"], limits) if "collection" in body else None
        return (body["metadata"] or {}) if "metadata" in body else None, collection

    def page(query: dict) -> core.Page:
        return core.Page(query.get("offset", 0), query.get("limit", limits.page), scope_of(query, limits))

    return RequestTypes(
        add_image=Definition(AddImage, add_image),
        delete_images=Definition(DeleteImages, lambda body: core.DeleteImages(body["ids"])),
        update_metadata=Definition(MetadataUpdate, update),
        edit_metadata=Definition(EditMetadata, lambda body: core.ImageUpdate(body["image_id"], body["metadata"] or {})),
        search=Definition(Search, lambda body: _options(body, photo_of(body), limits)),
        list_query=Definition(ListQuery, page),
        collection_path=Definition(CollectionName, lambda name: core.DeleteCollection(collection_name(name, limits))),
        link_query=Definition(LinkQuery, lambda query: query),
        add_image_upload=AddImageUpload,
        search_upload=SearchUpload,
    )


def _problem(error: ValidationError) -> ApiError:
    """The first problem, located by field path; a rule with its own code keeps it."""
    first = error.errors(include_url=False)[0]
    if first["type"] in CODES:
        return ApiError(CODES[first["type"]], first["msg"])
    where = ".".join(str(part) for part in first["loc"] if not (isinstance(part, str) and part[:1].isupper()))
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(Code.BAD_REQUEST, f"{where}: {message}" if where else message)


def form_body(form: Mapping[str, str], files: Mapping[str, Any]) -> dict:
    """A multipart/form-data upload in the shape of the JSON body.

    The photo is the ``image`` file part; every other field is read as JSON when it parses
    (``metadata={"a": 1}``, ``top_k=5``) and as text otherwise (``face=all``).
    """
    body: dict[str, Any] = {"format_type": form.get("format_type", "file")}
    for name, text in form.items():
        if name in ("format_type", "image"):
            continue
        try:
            body[name] = json.loads(text)
        except ValueError:
            if name == "metadata":
                raise ApiError(Code.BAD_REQUEST, "the metadata field is not valid JSON") from None
            body[name] = text
    upload = files.get("image")
    if upload is not None:
        body["image"] = {"file": upload.read()}
    elif "image" in form:
        raise ApiError(Code.BAD_FORMAT_TYPE, "with format_type file, send the photo as a file part named image")
    if isinstance(body.get("metadata"), dict) and isinstance(body.get("image"), dict):
        body["image"]["metadata"] = body.pop("metadata")
    return body
