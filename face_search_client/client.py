"""A typed client of the Face Search API v2: one method per endpoint, one exception type.

Photos given as bytes or paths are sent as multipart/form-data (no base64 inflation);
photos given by URL are sent as JSON for the server to download. Every refusal raises
``FaceSearchError`` carrying the API's ``status_code`` and ``message``.

Each answer is read into the dataclass below of the same shape, field by field (a field
whose JSON name differs says so in its metadata); tests/unit/api/test_client_contract.py
checks every one against the server's OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import requests

from service.api.paths import API  # the one place the base path is written: it imports nothing

Photo = bytes | str | os.PathLike
Box = tuple[float, float, float, float]

# the codes this client acts on (the server's table: docs/api.md)
NO_FACE = 3
OUT_OF_REQUESTS = 4


# A field's metadata: {JSON: name} reads it from the answer's field of that name; {REST: True}
# holds the answer's fields that the others do not name.
JSON, REST = "json", "rest"


class FaceSearchError(Exception):
    """A refusal: the API's ``status_code`` (docs/api.md lists the codes; -1 when no API answer
    arrived) and ``message``, with the HTTP status and, for the rate limit, ``retry_after``."""

    def __init__(self, status_code: int, message: str, http_status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(f"code {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Face:
    id: int
    bbox: Box
    score: float


@dataclass(frozen=True)
class _Stored:
    """What every answer about a stored image carries. ``url`` and ``thumbnail_url`` (a small
    JPEG) are signed links: they work without credentials until they expire (an hour by
    default), so a page can put them in ``<img>`` tags."""

    id: int
    url: str
    thumbnail_url: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ImageSummary(_Stored):
    """An image as listed: its faces as a count."""

    faces: int
    created_at: str


@dataclass(frozen=True)
class Image(_Stored):
    """An image as added or read: every face with its box and detection score."""

    faces: list[Face]
    created_at: str


@dataclass(frozen=True)
class Page:
    images: list[ImageSummary] = field(metadata={JSON: "result"})
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class Hit(_Stored):
    """A matching image: ``score`` and ``bbox`` are those of its best-matching face."""

    score: float
    bbox: Box


@dataclass(frozen=True)
class FaceMatches:
    """One face of the query photo (its box and detection score) and the images it matched."""

    bbox: Box
    score: float
    hits: list[Hit] = field(metadata={JSON: "results"})


@dataclass(frozen=True)
class Deleted:
    count: int = field(metadata={JSON: "deleted"})
    ids: list[int] = field(metadata={JSON: "deleted_ids"})


@dataclass(frozen=True)
class IndexState:
    """The gallery's index: its kind and size, and the rest of what GET /index tells (what it is
    made of, its generation) in ``details``."""

    kind: str
    vectors: int
    details: dict[str, Any] = field(default_factory=dict, metadata={REST: True})


def read(kind: Any, data: Any) -> Any:
    """A JSON value as the client's type ``kind``: a dataclass field by field, a list item by
    item, a box as a tuple."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        fields = dataclasses.fields(kind)
        named = {f.metadata.get(JSON, f.name) for f in fields}
        values = {
            f.name: {k: v for k, v in data.items() if k not in named}
            if f.metadata.get(REST)
            else read(hints[f.name], data[f.metadata.get(JSON, f.name)])
            for f in fields
        }
        return kind(**values)
    origin = typing.get_origin(kind)
    if origin is list:
        return [read(typing.get_args(kind)[0], item) for item in data]
    if origin is tuple:
        return tuple(data)
    return data


def _photo_bytes(photo: Photo) -> bytes:
    return photo if isinstance(photo, bytes) else Path(photo).read_bytes()


class SearchOptions(TypedDict, total=False):
    """How to search (all optional, by keyword): ``top_k`` images (the server's default: 10),
    least cosine ``threshold`` (default: calibrated for the gallery), only stored faces of at
    least ``min_face_size`` pixels and ``min_det_score``; ``url`` of the query photo for the
    server to download instead of sending it."""

    top_k: int
    threshold: float | None
    min_face_size: float | None
    min_det_score: float | None
    url: str | None


class FaceSearchClient:
    """``FaceSearchClient("http://127.0.0.1:8000", key, secret)``; safe to share between threads
    as long as ``session`` is not shared with other code that changes it."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        key: str = "",
        secret: str = "",
        timeout: float = 120.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.auth = (key, secret)

    # -- the endpoints ------------------------------------------------------------------

    def list_images(self, offset: int = 0, limit: int = 50) -> Page:
        """``GET /images``: one page of the key's images, oldest first."""
        return read(Page, self._call("GET", "/images", params={"offset": offset, "limit": limit}))

    def add_image(self, photo: Photo | None = None, metadata: dict | None = None, *, url: str | None = None) -> Image:
        """``POST /images``: store a photo (bytes, a path, or ``url=`` for the server to fetch)
        and index every face in it."""
        if url is not None:
            body: dict[str, Any] = {"image": {"url": url}}
            if metadata is not None:
                body["image"]["metadata"] = metadata
            return read(Image, self._call("POST", "/images", json=body)["result"])
        fields = {} if metadata is None else {"metadata": metadata}
        return read(Image, self._upload("/images", photo, fields)["result"])

    def get_image(self, image_id: int) -> Image:
        """``GET /images/<id>``."""
        return read(Image, self._call("GET", f"/images/{image_id}")["result"])

    def update_metadata(self, image_id: int, metadata: dict) -> Image:
        """``PUT /images/<id>``: replace the image's metadata."""
        return read(Image, self._call("PUT", f"/images/{image_id}", json={"metadata": metadata})["result"])

    def delete_images(self, ids: Iterable[int]) -> Deleted:
        """``DELETE /images``: ids that are unknown or another key's are skipped."""
        return read(Deleted, self._call("DELETE", "/images", json={"ids": list(ids)}))

    def photo(self, image_id: int) -> bytes:
        """``GET /images/<id>/file``: the stored photo's bytes."""
        return self._request("GET", f"/images/{image_id}/file").content

    def search(self, photo: Photo | None = None, **options: Unpack[SearchOptions]) -> list[Hit]:
        """``POST /search`` with the query's largest face: matching images, best first."""
        return read(list[Hit], self._search(photo, options, "largest"))

    def search_all_faces(self, photo: Photo | None = None, **options: Unpack[SearchOptions]) -> list[FaceMatches]:
        """``POST /search`` with ``face: "all"``: one answer per face of the query, largest first."""
        return read(list[FaceMatches], self._search(photo, options, "all"))

    def index_state(self) -> IndexState:
        """``GET /index``: the gallery's vector index."""
        return read(IndexState, self._call("GET", "/index")["result"])

    def iter_images(self, page_size: int = 1000) -> Iterator[ImageSummary]:
        """Every image of the key, page after page."""
        offset = 0
        while True:
            page = self.list_images(offset, page_size)
            yield from page.images
            offset += len(page.images)
            if not page.images or offset >= page.total:
                return

    # -- plumbing ------------------------------------------------------------------------

    def _search(self, photo: Photo | None, options: SearchOptions, face: str) -> list[dict]:
        """The search's JSON options: the server's defaults are left to it, ``None`` is not sent."""
        fields = {name: value for name, value in options.items() if name != "url" and value is not None}
        fields["face"] = face
        if options.get("url") is not None:
            return self._call("POST", "/search", json={"image": {"url": options["url"]}, **fields})["result"]
        return self._upload("/search", photo, fields)["result"]

    def _upload(self, path: str, photo: Photo | None, fields: dict) -> dict:
        if photo is None:
            raise ValueError("give the photo (bytes or a path) or url=")
        name = Path(photo).name if not isinstance(photo, bytes) else "photo"
        form = {key: json.dumps(value) for key, value in fields.items()}
        return self._call("POST", path, data=form, files={"image": (name, _photo_bytes(photo))})

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base + API + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise FaceSearchError(-1, f"the server could not be reached: {exc}") from exc
        if response.status_code >= 400:
            raise self._refusal(response)
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self._request(method, path, **kwargs)
        try:
            answer = response.json()
        except ValueError as exc:
            raise FaceSearchError(-1, "the answer is not JSON", response.status_code) from exc
        if answer.get("status_code") != 0:
            raise self._refusal(response)
        return answer

    @staticmethod
    def _refusal(response: requests.Response) -> FaceSearchError:
        try:
            answer = response.json()
            code, message = int(answer["status_code"]), str(answer["message"])
        except (ValueError, KeyError, TypeError):
            code, message = -1, f"HTTP {response.status_code} without the API's answer"
        retry = response.headers.get("Retry-After")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        return FaceSearchError(code, message, response.status_code, retry_after)
