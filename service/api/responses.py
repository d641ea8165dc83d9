"""The API's answer shapes, as pydantic types: the OpenAPI document's response schemas.

The server's answers are built by service/api/render.py; the schemathesis test checks
every answer a live server gives against these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from ..core.images import THUMBNAIL_SIDE
from .envelope import CODE_FIELDS
from .errors import Code

Box = Annotated[list[float], Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the photo's pixels.")]
Score = Annotated[float, Field(ge=-1.0, le=1.0)]
ErrorCode = Annotated[int, Field(ge=1, le=max(Code), description="The error code; see the table above.")]


def _code_fields(code: Any) -> dict[str, Any]:
    """The code and message fields of an answer, from ``CODE_FIELDS``: the API's own pair, then
    the same values under the vendor's other names (absent with FACE_SEARCH_CODE_ALIASES=0)."""
    (code_name, message_name), *others = CODE_FIELDS
    fields: dict[str, Any] = {code_name: code, message_name: str}
    for other_code, other_message in others:
        fields[other_code] = NotRequired[Annotated[code, Field(description=f"The same as {code_name}.")]]
        fields[other_message] = NotRequired[Annotated[str, Field(description=f"The same as {message_name}.")]]
    return fields


Answer = TypedDict("Answer", _code_fields(Literal[0]))  # type: ignore[misc]
Answer.__doc__ = "The envelope of a success: ``result`` is added by each answer."


class FaceOut(TypedDict):
    id: int
    bbox: Box
    score: Annotated[float, Field(description="Detection score.")]


Url = Annotated[
    str,
    Field(
        description="A signed link to the stored photo: it works without credentials until it expires "
        "(FACE_SEARCH_LINK_SECONDS), for this image only; its owner may also load it with the key."
    ),
]
ThumbnailUrl = Annotated[
    str,
    Field(
        description=f"A signed link, as url, to a JPEG of the photo at most {THUMBNAIL_SIDE} pixels on its longer side."
    ),
]


InCollection = Annotated[str, Field(description="The image's collection; absent for the default one.")]


class ImageSummary(TypedDict):
    id: int
    url: Url
    thumbnail_url: ThumbnailUrl
    metadata: dict[str, Any]
    faces: Annotated[int, Field(description="How many faces are indexed.")]
    created_at: Annotated[str, Field(description="ISO 8601, UTC.")]
    collection: NotRequired[InCollection]


class ImageDetail(TypedDict):
    id: int
    url: Url
    thumbnail_url: ThumbnailUrl
    metadata: dict[str, Any]
    faces: list[FaceOut]
    created_at: str
    collection: NotRequired[InCollection]


class Hit(TypedDict):
    id: int
    url: Url
    thumbnail_url: ThumbnailUrl
    metadata: dict[str, Any]
    score: Annotated[Score, Field(description="Cosine similarity of the best-matching face in this image.")]
    bbox: Annotated[Box, Field(description="The best-matching face in the stored image.")]
    collection: NotRequired[InCollection]


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


class CollectionOut(TypedDict):
    name: str
    images: int
    faces: int


class CollectionsAnswer(Answer):
    result: list[CollectionOut]


class CollectionDeleteAnswer(Answer):
    result: None
    deleted: Annotated[int, Field(description="The images deleted.")]


class IndexAnswer(Answer):
    result: IndexState


Refusal = TypedDict("Refusal", {"result": None, **_code_fields(ErrorCode)})  # type: ignore[misc]
Refusal.__doc__ = "The envelope of every refusal."


class Health(TypedDict):
    status: Literal["ok", "unavailable"]
    checks: NotRequired[dict[str, bool]]
    pack: NotRequired[str]  # /healthz: the model pack served, and its weights' licence
    licence: NotRequired[str]
