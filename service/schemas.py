"""The API's request and response shapes, as pydantic types.

The OpenAPI document (service/openapi.py) is generated from these types and the same types
validate every request body, so the document cannot promise a shape the server refuses or
the other way round. They check JSON types and ranges only: the rules that carry their own
code stay in service/payloads.py (a missing or undecodable image is code 1, an unknown or
mismatched ``format_type`` code 6), which is why ``image`` is optional here and
``format_type`` has no type or enum. A request these types refuse is code 7.

Limits an operator can change (``FACE_SEARCH_MAX_TOP_K``, ``FACE_SEARCH_MAX_IDS``, the metadata
size and depth) are checked by service/payloads.py with the running settings; the document
states their configured values (``service.openapi.document``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import AfterValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from .errors import Code
from .payloads import MAX_LIST_LIMIT, QUERY_FACES, RESERVED_METADATA_KEYS

REQUEST = ConfigDict(strict=True, extra="allow")  # JSON types as sent; unknown fields are ignored
MAX_ID = 2**63 - 1


def _no_reserved_keys(value: dict[str, Any]) -> dict[str, Any]:
    reserved = [key for key in RESERVED_METADATA_KEYS if key in value]
    if reserved:
        raise ValueError(f"metadata may not use the reserved keys {', '.join(reserved)}")
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_no_reserved_keys),
    Field(
        description="Any JSON object, at most 16 KiB as compact UTF-8 JSON (FACE_SEARCH_MAX_METADATA_BYTES) and "
        "8 levels deep (FACE_SEARCH_MAX_METADATA_DEPTH), without the reserved keys "
        f"{', '.join(RESERVED_METADATA_KEYS)}.",
        json_schema_extra={"propertyNames": {"not": {"enum": list(RESERVED_METADATA_KEYS)}}},
        examples=[{"name": "Ada", "album": "team day"}],
    ),
]
ImageId = Annotated[int, Field(ge=1, le=MAX_ID)]
Box = Annotated[list[float], Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the photo's pixels.")]
Score = Annotated[float, Field(ge=-1.0, le=1.0)]


# -- requests ---------------------------------------------------------------------------


@with_config(REQUEST)
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


FormatType = Annotated[
    Any,
    Field(
        description="Optional: base64, url or file; must name the form the image was sent in "
        "(anything else is code 6).",
        examples=["base64"],
    ),
]


@with_config(REQUEST)
class AddImage(TypedDict, total=False):
    """A photo to store; every face in it is indexed."""

    format_type: FormatType
    image: Annotated[ImageInput | None, Field(description="Required: without it the answer is code 1.")]
    metadata: Annotated[Metadata | None, Field(description="Metadata may also be sent beside the image.")]


@with_config(REQUEST)
class DeleteImages(TypedDict):
    """Image ids to delete; ids that are unknown or belong to another key are skipped."""

    ids: Annotated[list[ImageId], Field(min_length=1, description="At most FACE_SEARCH_MAX_IDS ids.")]


@with_config(REQUEST)
class SearchOptions(TypedDict, total=False):
    top_k: Annotated[
        int, Field(ge=1, description="How many images to return, best first (10; at most FACE_SEARCH_MAX_TOP_K).")
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
        Literal[QUERY_FACES],  # type: ignore[valid-type]
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


@with_config(REQUEST)
class Search(SearchOptions, total=False):
    """A query photo and how to search with it."""

    format_type: FormatType
    image: Annotated[ImageInput | None, Field(description="Required: without it the answer is code 1.")]


@with_config(REQUEST)
class MetadataUpdate(TypedDict):
    """The image's new metadata, replacing the old."""

    metadata: Metadata | None


class ListQuery(TypedDict, total=False):
    """Query strings are text: these are read leniently, then checked by service/payloads.py."""

    offset: Annotated[int, Field(ge=0, le=MAX_ID, description="Images to skip.")]
    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT, description="Images to return (default 50).")]


Upload = Annotated[bytes, Field(description="The photo file (JPEG, PNG, WebP, BMP, TIFF or GIF).")]


class AddImageUpload(TypedDict, total=False):
    """The multipart/form-data form of adding a photo: fields other than the file are JSON."""

    image: Required[Upload]
    metadata: Metadata | None
    format_type: FormatType


class SearchUpload(SearchOptions, total=False):
    """The multipart/form-data form of a search: fields other than the file are JSON."""

    image: Required[Upload]
    format_type: FormatType


# -- responses ---------------------------------------------------------------------------


class Answer(TypedDict):
    """The envelope of a success: ``result`` is added by each answer."""

    status_code: Literal[0]
    message: str


class FaceOut(TypedDict):
    id: int
    bbox: Box
    score: Annotated[float, Field(description="Detection score.")]


class ImageSummary(TypedDict):
    id: int
    url: Annotated[str, Field(description="Where the stored photo is served to its owner.")]
    metadata: dict[str, Any]
    faces: Annotated[int, Field(description="How many faces are indexed.")]
    created_at: Annotated[str, Field(description="ISO 8601, UTC.")]


class ImageDetail(TypedDict):
    id: int
    url: str
    metadata: dict[str, Any]
    faces: list[FaceOut]
    created_at: str


class Hit(TypedDict):
    id: int
    url: str
    metadata: dict[str, Any]
    score: Annotated[Score, Field(description="Cosine similarity of the best-matching face in this image.")]
    bbox: Annotated[Box, Field(description="The best-matching face in the stored image.")]


class FaceHits(TypedDict):
    """One face of the query photo and the images it matched (``face: "all"``)."""

    bbox: Box
    score: Annotated[float, Field(description="Detection score of the query face.")]
    results: list[Hit]


class IndexState(TypedDict):
    kind: Annotated[str, Field(description="flat (exact) or ivf (trained on the gallery).")]
    vectors: int


class ImageAnswer(Answer):
    result: ImageDetail


class ImagePage(Answer):
    result: list[ImageSummary]
    total: int
    offset: int
    limit: int


class SearchAnswer(Answer):
    result: Annotated[
        list[Hit] | list[FaceHits],
        Field(description='One list of images; with face "all", one entry per query face.'),
    ]


class DeleteAnswer(Answer):
    result: None
    deleted: int
    deleted_ids: list[int]


class IndexAnswer(Answer):
    result: IndexState


class Refusal(TypedDict):
    """The envelope of every refusal."""

    result: None
    status_code: Annotated[int, Field(ge=1, le=max(Code), description="The error code; see the table above.")]
    message: str


class Health(TypedDict):
    status: Literal["ok", "unavailable"]
    pack: NotRequired[str]  # /healthz: the model pack served, and its weights' licence
    licence: NotRequired[str]
    checks: NotRequired[dict[str, bool]]
