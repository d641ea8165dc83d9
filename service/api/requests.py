"""Each request an endpoint reads, as one module-level type: it validates the request, it is
the schema the OpenAPI document shows, and a reader (``@reads``) turns it into the use case's
typed request (service/core/requests.py).

JSON types are strict (``true`` is not a number, ``"5"`` not an integer) and unknown fields
are ignored. A refusal is code 7 and names the field, except for the rules that carry their
own code: no image is code 1, an unknown or mismatched ``format_type`` code 6.

The configured limits (``Limits``, service/core/config.py) are settings, so the types do not
hold them: a bound is the marker ``AtMost("max_ids")`` and a description that states one is
``Described("At most {max_ids} ids.")``. When a request is read, the limits in force are
pydantic's validation context (``read`` passes the app's); when the document is made, they
are the ones ``limits_in_force`` sets (``openapi.document`` does, for the app's). So one class
serves every configuration, and what the server enforces is what its document states.
"""

# no ``from __future__ import annotations``: pydantic reads these annotations as objects

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal, Required

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    with_config,
)
from pydantic_core import CoreSchema, PydanticKnownError, core_schema
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from ..core import requests as core
from ..core.config import DEFAULT_LIMITS, Limits
from ..core.errors import InvalidRequest
from ..core.filters import collection_name, scope_of
from ..core.metadata import RESERVED_KEYS, checked_metadata
from .errors import ApiError, Code

FORMAT_TYPES = ("base64", "url", "file")
MAX_ID = 2**63 - 1
STRICT = ConfigDict(strict=True, extra="allow")  # JSON types as sent; unknown fields are ignored

# -- the configured limits, in the types ----------------------------------------------------------

_DOCUMENTED = ContextVar("documented_limits", default=DEFAULT_LIMITS)


@contextmanager
def limits_in_force(limits: Limits) -> Iterator[None]:
    """The limits a JSON schema made inside the block states (the OpenAPI document's)."""
    token = _DOCUMENTED.set(limits)
    try:
        yield
    finally:
        _DOCUMENTED.reset(token)


def _limits(info: ValidationInfo) -> Limits:
    return info.context if isinstance(info.context, Limits) else _DOCUMENTED.get()


@dataclass(frozen=True)
class AtMost:
    """The value (a number, or a list's length) is at most the limit of this name. A list is
    measured before its items are read, as pydantic's own ``max_length`` is, with its message."""

    limit: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        def items(value: Any, info: ValidationInfo) -> Any:
            bound = getattr(_limits(info), self.limit)
            if isinstance(value, list) and len(value) > bound:
                context = {"field_type": "List", "max_length": bound, "actual_length": len(value)}
                raise PydanticKnownError("too_long", context)
            return value

        def number(value: Any, info: ValidationInfo) -> Any:
            bound = getattr(_limits(info), self.limit)
            if value > bound:
                raise PydanticKnownError("less_than_equal", {"le": bound})
            return value

        inner = handler(source)
        if inner["type"] == "list":
            return core_schema.with_info_before_validator_function(items, inner)
        return core_schema.with_info_after_validator_function(number, inner)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        shown = handler(schema)
        shown["maxItems" if shown.get("type") == "array" else "maximum"] = getattr(_DOCUMENTED.get(), self.limit)
        return shown


@dataclass(frozen=True)
class Described:
    """A description naming limits, as ``{max_ids}``: filled in with the documented ones."""

    text: str

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        shown = handler(schema)
        shown["description"] = self.text.format_map(vars(_DOCUMENTED.get()))
        return shown


@dataclass(frozen=True)
class Shown:
    """What the document shows of a value that service/core/filters.py reads (its messages name
    the problem: a list where an object is needed, an unknown operator...), so the type lets
    the value through as sent: ``schema``, its description's ``{limit}`` names and ``bounds``
    (a schema keyword: a limit's name) filled in with the documented limits."""

    schema: Mapping[str, Any]
    bounds: Mapping[str, str] = field(default_factory=dict)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        limits = _DOCUMENTED.get()
        shown = {**self.schema, **{keyword: getattr(limits, name) for keyword, name in self.bounds.items()}}
        shown["description"] = shown["description"].format_map(vars(limits))
        return shown


# -- the parts requests share ----------------------------------------------------------------------


def _metadata_rules(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    try:
        return checked_metadata(value, _limits(info))
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from None


def _whole_number(value: Any) -> Any:
    """Query strings are text: digits only (no sign, point or exponent), then an int."""
    if isinstance(value, str):
        if not re.fullmatch(r"\d{1,19}", value.strip()):
            raise ValueError("must be a whole number")
        return int(value)
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_metadata_rules),
    Described(
        "Any JSON object, at most {max_metadata_bytes} bytes as compact UTF-8 JSON (FACE_SEARCH_MAX_METADATA_BYTES) "
        "and {max_metadata_depth} levels deep (FACE_SEARCH_MAX_METADATA_DEPTH), without the reserved keys "
        + ", ".join(RESERVED_KEYS)
        + "."
    ),
    Field(
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
ImageId = Annotated[int, Field(ge=1, le=MAX_ID)]
Cosine = Annotated[float | None, Field(ge=-1.0, le=1.0, allow_inf_nan=False)]  # a threshold; None: the default

# collections, filters and creation times (docs/filters.md)
CollectionName = Annotated[
    Any,
    Shown(
        {
            "type": "string",
            "minLength": 1,
            "description": "A collection's name: 1 to {max_collection_chars} characters "
            "(FACE_SEARCH_MAX_COLLECTION_CHARS), no control characters. Without one, the default collection.",
            "examples": ["wedding-2024-06-01"],
        },
        {"maxLength": "max_collection_chars"},
    ),
]
Collections = Annotated[
    Any,
    Shown(
        {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            "description": "Only images in this collection, or in any of these (docs/filters.md).",
            "examples": ["wedding-2024-06-01", ["gala", "wedding-2024-06-01"]],
        }
    ),
]
FILTER = (
    "Only images whose metadata passes the filter, in the syntax of Pinecone and Chroma: $eq $ne $in $nin $gt $gte "
    "$lt $lte $exists, $and / $or over lists of such objects, dotted keys for nested metadata (docs/filters.md). At "
    "most {max_filter_bytes} bytes as JSON, {max_filter_depth} levels of $and / $or, {max_filter_terms} conditions "
    "and listed values; a malformed filter is code 7, its message naming the problem."
)
FilterObject = Annotated[
    Any, Shown({"type": "object", "description": FILTER, "examples": [{"status": "active", "year": {"$gte": 2021}}]})
]
FilterText = Annotated[
    Any,
    Shown({"type": "string", "description": FILTER + " Sent URL-encoded.", "examples": ['{"status": "active"}']}),
]
Moment = Annotated[
    Any,
    Shown(
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
    """What narrows a search or a listing to some of the key's images; without any of it, all."""

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
            description="The photo's bytes in base64 (standard or URL-safe, a data: prefix and line breaks allowed)."
        ),
    ]
    url: Annotated[str, Field(description="An http(s) URL the server downloads the photo from.")]
    metadata: Metadata | None


PhotoField = Annotated[ImageInput | None, Field(description="Required: without it the answer is code 1.")]


def photo_of(body: Mapping[str, Any]) -> core.Photo:
    """The one photo a request carries; ``format_type``, when given, must name the form sent."""
    declared, image = body.get("format_type"), body.get("image")
    if declared is not None and declared not in FORMAT_TYPES:
        raise ApiError(Code.BAD_FORMAT_TYPE, f"format_type must be one of {', '.join(FORMAT_TYPES)}")
    if image is None:
        raise ApiError(Code.NO_CONTENT, "the body has no image")
    sent = [form for form in FORMAT_TYPES if form in image]
    if len(sent) > 1:
        raise ApiError(Code.BAD_FORMAT_TYPE, "send the image one way only: base64, url or file")
    if declared is not None and sent and declared != sent[0]:
        raise ApiError(Code.BAD_FORMAT_TYPE, f"format_type is {declared!r} but the image was sent as {sent[0]}")
    if not sent:
        raise ApiError(Code.NO_CONTENT, "image.base64 is missing")
    if sent[0] == "file":
        if not isinstance(image["file"], bytes):
            raise ApiError(Code.BAD_FORMAT_TYPE, "format_type file is a multipart/form-data upload, not JSON")
        if not image["file"]:
            raise ApiError(Code.NO_CONTENT, "the uploaded image file is empty")
        return core.Photo(data=image["file"])
    if sent[0] == "url":
        return core.Photo(url=image["url"])
    return core.Photo(base64=image["base64"])


# -- reading a request -------------------------------------------------------------------------------

_READERS: dict[type, Callable[[Any, Limits], Any]] = {}


def reads(model: type) -> Callable[[Callable[[Any, Limits], Any]], Callable[[Any, Limits], Any]]:
    """Register the function that turns a valid ``model`` into the use case's request (given
    the limits in force, for their defaults). A model without one is handed over as validated."""

    def register(reader: Callable[[Any, Limits], Any]) -> Callable[[Any, Limits], Any]:
        _READERS[model] = reader
        return reader

    return register


@dataclass(frozen=True)
class OneOf:
    """A body that may be any of ``models`` (the document shows each), read as the one ``pick``
    chooses for it."""

    models: tuple[type, ...]
    pick: Callable[[Mapping[str, Any]], type]


@cache
def adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)


def read(model: type | OneOf, data: Mapping[str, Any], limits: Limits) -> Any:
    """``data`` (a JSON body, a form, a query string) as the use case's request; the refusal's
    code and message when it does not fit."""
    chosen = model.pick(data) if isinstance(model, OneOf) else model
    try:
        valid = adapter(chosen).validate_python(dict(data), context=limits)
    except ValidationError as exc:
        raise _problem(exc) from None
    reader = _READERS.get(chosen)
    return valid if reader is None else reader(valid, limits)


def _problem(error: ValidationError) -> ApiError:
    """The first problem, located by field path (without the names of the types it passed through)."""
    first = error.errors(include_url=False)[0]
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


# -- the requests ----------------------------------------------------------------------------------


@with_config(STRICT)
class AddImage(TypedDict, total=False):
    """A photo to store; every face in it is indexed."""

    format_type: FormatType
    image: PhotoField
    metadata: Annotated[Metadata | None, Field(description="Metadata may also be sent beside the image.")]
    collection: CollectionName


@reads(AddImage)
def _add_image(body: AddImage, limits: Limits) -> core.AddImage:
    image = body.get("image") or {}
    inner = image.get("metadata")
    metadata = (inner if inner is not None else body.get("metadata")) or {}
    if "collection" in body:
        return core.AddImage(photo_of(body), metadata, collection_name(body["collection"], limits))
    return core.AddImage(photo_of(body), metadata)


class AddImageUpload(TypedDict, total=False):
    """The multipart/form-data form of adding a photo: fields other than the file are JSON."""

    image: Required[Upload]
    metadata: Metadata | None
    format_type: FormatType
    collection: CollectionName


@with_config(STRICT)
class DeleteImages(TypedDict):
    """Image ids to delete; ids that are unknown or belong to another key are skipped."""

    ids: Annotated[list[ImageId], Field(min_length=1), AtMost("max_ids"), Described("At most {max_ids} ids.")]


@reads(DeleteImages)
def _delete_images(body: DeleteImages, limits: Limits) -> core.DeleteImages:
    return core.DeleteImages(body["ids"])


# The documented demos send the bulk delete as POST /images: ids and no image.
ADD_OR_DELETE = OneOf(
    (AddImage, DeleteImages), lambda body: DeleteImages if "ids" in body and "image" not in body else AddImage
)


@with_config(STRICT)
class SearchOptions(TypedDict, total=False):
    top_k: Annotated[
        int,
        Field(ge=1),
        AtMost("max_top_k"),
        Described("How many images to return, best first ({top_k}; at most {max_top_k})."),
    ]
    threshold: Annotated[
        Cosine, Field(description="Least cosine similarity of a match; default: the model pack's calibrated value.")
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
    image: PhotoField


@reads(Search)
def _search(body: Search, limits: Limits) -> core.Search:
    stored = core.FaceFilter(body.get("min_face_size") or 0.0, body.get("min_det_score") or 0.0)
    return core.Search(
        photo_of(body), body.get("top_k", limits.top_k), body.get("threshold"), body.get("face", "largest"), stored,
        scope_of(body, limits),
    )  # fmt: skip


class SearchUpload(SearchOptions, Narrowing, total=False):
    """The multipart/form-data form of a search: fields other than the file are JSON."""

    image: Required[Upload]
    format_type: FormatType


@with_config(STRICT)
class MetadataUpdate(TypedDict, total=False):
    """The image's new metadata, replacing the old, its new collection, or both (one at least)."""

    metadata: Metadata | None
    collection: Annotated[CollectionName, Field(description="The collection the image moves to.")]


@reads(MetadataUpdate)
def _metadata_update(body: MetadataUpdate, limits: Limits) -> tuple[dict[str, Any] | None, str | None]:
    """The new metadata (None: kept) and the new collection (None: kept)."""
    if "metadata" not in body and "collection" not in body:
        raise InvalidRequest("give the image's new metadata, its new collection, or both")
    collection = collection_name(body["collection"], limits) if "collection" in body else None
    return ((body["metadata"] or {}) if "metadata" in body else None), collection


@with_config(STRICT)
class EditMetadata(TypedDict):
    """The image's new metadata, replacing the old; the image is named in the body."""

    image_id: Annotated[ImageId, Field(description="The image whose metadata is replaced.")]
    metadata: Metadata | None


@reads(EditMetadata)
def _edit_metadata(body: EditMetadata, limits: Limits) -> core.ImageUpdate:
    return core.ImageUpdate(body["image_id"], body["metadata"] or {})


class ListQuery(TypedDict, total=False):
    """Query strings are text: offset and limit are whole numbers (digits only), the filter is
    URL-encoded JSON; ``collection`` may be given more than once."""

    offset: Annotated[int, Field(ge=0, le=MAX_ID, description="Images to skip."), QueryNumber]
    limit: Annotated[int, Field(ge=1), AtMost("max_page"), Described("Images to return (default {page})."), QueryNumber]
    collection: Collections
    filter: FilterText
    created_after: Moment
    created_before: Moment


@reads(ListQuery)
def _list_query(query: ListQuery, limits: Limits) -> core.Page:
    return core.Page(query.get("offset", 0), query.get("limit", limits.page), scope_of(query, limits))


class LinkQuery(TypedDict):
    """A signed link's query string, as the image's `url` and `thumbnail_url` carry it."""

    gallery: Annotated[int, Field(ge=1, le=MAX_ID, description="The image's gallery."), QueryNumber]
    expires: Annotated[int, Field(ge=0, le=MAX_ID, description="Unix seconds the link works until."), QueryNumber]
    signature: Annotated[str, Field(description="HMAC-SHA256 of the rest, base64url.")]


# -- persons ---------------------------------------------------------------------------------------

MAX_NAME = 200  # characters of a person's name
Id = Annotated[int, Field(ge=1, le=MAX_ID)]  # a person's, a face's, a job's: as an image's
PersonName = Annotated[
    str,
    Field(
        max_length=MAX_NAME,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description=f"At most {MAX_NAME} characters, no control characters; empty for no name.",
        examples=["Ada Lovelace"],
    ),
]
FaceIds = Annotated[list[Id], Field(min_length=1), AtMost("max_ids"), Described("Face ids (at most {max_ids}).")]


@with_config(STRICT)
class NewPerson(TypedDict, total=False):
    """A named person: of faces of the gallery (`face_ids`), or of the largest face of a photo
    (`image`), which is added to the gallery as `POST /images` adds it."""

    name: Required[PersonName]
    metadata: Metadata | None
    face_ids: FaceIds
    image: ImageInput | None
    format_type: FormatType


@reads(NewPerson)
def _new_person(body: NewPerson, limits: Limits) -> core.NewPerson:
    has_faces, has_image = "face_ids" in body, body.get("image") is not None
    if has_faces == has_image:
        raise ApiError(Code.BAD_REQUEST, "send either face_ids or an image")
    photo = photo_of(body) if has_image else None
    return core.NewPerson(body["name"], body.get("metadata") or {}, body.get("face_ids", []), photo)


@with_config(STRICT)
class PersonChange(TypedDict, total=False):
    """What changes; what is left out stays."""

    name: PersonName
    metadata: Metadata | None


@with_config(STRICT)
class PersonDelete(TypedDict, total=False):
    """With `forget`, the person's faces are deleted from the gallery and from every index, and
    the photos left with no face are deleted: the request to delete someone's biometric data."""

    forget: Annotated[bool, Field(description="false (default): only the person goes; its faces stay.")]


@reads(PersonDelete)
def _person_delete(body: PersonDelete, limits: Limits) -> bool:
    return body.get("forget", False)


@with_config(STRICT)
class PersonMerge(TypedDict):
    """Persons to fold into this one."""

    ids: Annotated[
        list[Id],
        Field(min_length=1),
        AtMost("max_ids"),
        Described("Person ids, not this person's (at most {max_ids})."),
    ]


@reads(PersonMerge)
def _person_merge(body: PersonMerge, limits: Limits) -> list[int]:
    return body["ids"]


From = Annotated[
    Id | None,
    Field(
        description="Move them only if they are in this person now (null: in no person); else code 18 and "
        "nothing changes. Of two clients moving one face from where they saw it, one wins."
    ),
]
# "from" is a Python keyword: the functional form of a TypedDict, configured as with_config does
FacesIn = TypedDict("FacesIn", {"face_ids": Required[FaceIds], "from": From}, total=False)
FacesIn.__pydantic_config__ = STRICT  # type: ignore[attr-defined]
FacesIn.__doc__ = "Faces to put in this person, from another person or from none."


@reads(FacesIn)
def _faces_in(body: dict[str, Any], limits: Limits) -> core.FacesMove:
    return core.FacesMove(0, body["face_ids"], "from" in body, body.get("from"))  # the person is the path's


@with_config(STRICT)
class FacesOut(TypedDict):
    """Faces of this person to take out of it (no grouping run puts them back in it)."""

    face_ids: FaceIds


@reads(FacesOut)
def _faces_out(body: FacesOut, limits: Limits) -> list[int]:
    return body["face_ids"]


@with_config(STRICT)
class PersonSearch(Narrowing, total=False):
    """A query photo: the persons its largest face matches, by every face of each person (of
    the photos in the collections, filter and creation times given, when given)."""

    format_type: FormatType
    image: PhotoField
    top_k: Annotated[
        int, Field(ge=1), AtMost("max_top_k"), Described("How many persons ({top_k}; at most {max_top_k}).")
    ]
    threshold: Annotated[
        Cosine,
        Field(description="Least cosine of a person's nearest face; default: calibrated for the faces in persons."),
    ]


@reads(PersonSearch)
def _person_search(body: PersonSearch, limits: Limits) -> core.PersonSearch:
    return core.PersonSearch(
        photo_of(body), body.get("top_k", limits.top_k), body.get("threshold"), scope_of(body, limits)
    )


@with_config(STRICT)
class Grouping(TypedDict, total=False):
    """A grouping run: of the faces added since the last run (and the faces near them), or of all."""

    full: Annotated[bool, Field(description="Look at every face (default: only the new ones and their neighbours).")]


@reads(Grouping)
def _grouping(body: Grouping, limits: Limits) -> bool:
    return body.get("full", False)
