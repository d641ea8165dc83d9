"""The API's answer shapes, as pydantic types: the OpenAPI document's response schemas.

The server's answers are built by service/api/render.py; the schemathesis test checks
every answer a live server gives against these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from .errors import Code

Box = Annotated[list[float], Field(min_length=4, max_length=4, description="x1, y1, x2, y2 in the photo's pixels.")]
Score = Annotated[float, Field(ge=-1.0, le=1.0)]


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
    checks: NotRequired[dict[str, bool]]
    pack: NotRequired[str]  # /healthz: the model pack served, and its weights' licence
    licence: NotRequired[str]
