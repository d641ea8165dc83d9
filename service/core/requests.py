"""What each use case is asked: typed values, already checked against the API's rules.

The HTTP layer builds these from a validated request body (service/api/requests.py, which
fills in what the request left out from the configured ``Limits``); a script builds them
directly. A default that is a setting (a search's ``top_k``, a page's size) is not repeated
here: the caller says it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from index.filters import DEFAULT_COLLECTION, EVERYTHING, Scope
from index.records import FaceInfo

QueryFaces = Literal["largest", "all"]


@dataclass(frozen=True)
class Photo:
    """A photo as sent: its bytes, their base64 text, or the http(s) URL to download them from."""

    data: bytes | None = None
    base64: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class FaceFilter:
    """Which stored faces may answer: at least this size (shorter box side, pixels) and score."""

    min_face_size: float = 0.0
    min_det_score: float = 0.0

    @property
    def active(self) -> bool:
        return self.min_face_size > 0 or self.min_det_score > 0

    def admits(self, face: FaceInfo) -> bool:
        x1, y1, x2, y2 = face.bbox
        return min(x2 - x1, y2 - y1) >= self.min_face_size and face.score >= self.min_det_score


@dataclass(frozen=True)
class AddImage:
    photo: Photo
    metadata: dict[str, Any] = field(default_factory=dict)
    collection: str = DEFAULT_COLLECTION


@dataclass(frozen=True)
class Search:
    photo: Photo
    top_k: int
    threshold: float | None = None  # None: the gallery's calibrated default
    face: QueryFaces = "largest"
    stored: FaceFilter = FaceFilter()
    scope: Scope = EVERYTHING  # the collections, metadata and creation times answers come from


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int
    scope: Scope = EVERYTHING


@dataclass(frozen=True)
class ImageUpdate:
    """New metadata for an image (replacing the old), another collection for it, or both."""

    image_id: int
    metadata: dict[str, Any] | None = None
    collection: str | None = None


@dataclass(frozen=True)
class DeleteImages:
    ids: list[int]


@dataclass(frozen=True)
class NewPerson:
    """A named person of these faces, or of the largest face of ``photo`` (stored as an image)."""

    name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    face_ids: list[int] = field(default_factory=list)
    photo: Photo | None = None


@dataclass(frozen=True)
class PersonChange:
    person_id: int
    name: str | None = None  # None: unchanged
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class FacesMove:
    """Faces into a person from wherever they are, or (``checked``) only from ``source``: a
    person, or none (None)."""

    person_id: int
    face_ids: list[int]
    checked: bool = False
    source: int | None = None


@dataclass(frozen=True)
class PersonSearch:
    photo: Photo
    top_k: int = 10
    threshold: float | None = None  # None: the gallery's calibrated default
    scope: Scope = EVERYTHING  # the photos whose faces count


@dataclass(frozen=True)
class DeleteCollection:
    name: str
