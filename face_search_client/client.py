"""A typed client of the Face Search API v2: one method per endpoint, one exception type.

Photos given as bytes or paths are sent as multipart/form-data (no base64 inflation);
photos given by URL are sent as JSON for the server to download. Every refusal raises
``FaceSearchError`` carrying the API's ``status_code`` and ``message``.

Each answer is read into the dataclass below of the same shape, field by field (a field
whose JSON name differs says so in its metadata); tests/unit/api/test_client_contract.py
checks every one against the server's OpenAPI document.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
import types
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
class PersonRef:
    """The person a face is in: ``name`` is empty for one a grouping run found and nobody named."""

    id: int
    name: str


@dataclass(frozen=True)
class StoredFace:
    id: int
    bbox: Box
    score: float


@dataclass(frozen=True)
class Face(StoredFace):
    person: PersonRef | None


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
    person: PersonRef | None


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


@dataclass(frozen=True)
class Cover:
    """A person's face: its photo, its id (``face_thumbnail``) and its box in the photo."""

    image_id: int
    face_id: int
    bbox: Box


@dataclass(frozen=True)
class Person:
    """A person: ``faces`` (each of another photo) and ``images`` are counts; ``name`` is empty
    for one a grouping run found and nobody named."""

    id: int
    name: str
    metadata: dict[str, Any]
    faces: int
    images: int
    cover: Cover | None


@dataclass(frozen=True)
class PersonPage:
    persons: list[Person] = field(metadata={JSON: "result"})
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class PersonImage(ImageSummary):
    """A photo of a person, and the person's face in it."""

    face: StoredFace


@dataclass(frozen=True)
class PersonImagePage:
    images: list[PersonImage] = field(metadata={JSON: "result"})
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class PersonHit(Person):
    """A person the query matched: ``score`` is that of its face nearest the query, ``face``."""

    score: float
    face: Cover


@dataclass(frozen=True)
class PersonDeleted:
    """What deleting a person removed: with forget, its faces and the photos left with none."""

    faces: list[int] = field(metadata={JSON: "deleted_faces"})
    images: list[int] = field(metadata={JSON: "deleted_images"})


@dataclass(frozen=True)
class Job:
    """A background job: ``state`` queued, running, done or failed; ``done`` of ``total`` steps."""

    id: int
    kind: str
    state: str
    done: int
    total: int
    error: str | None = None  # a failed job's reason

    @property
    def ended(self) -> bool:
        return self.state in ("done", "failed")


ANYWHERE = object()  # move_faces: from wherever the faces are


def read(kind: Any, data: Any) -> Any:
    """A JSON value as the client's type ``kind``: a dataclass field by field (one with a
    default may be absent), a list item by item, a box as a tuple, null as None."""
    if data is None:
        return None
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = typing.get_type_hints(kind)
        fields = dataclasses.fields(kind)
        named = {f.metadata.get(JSON, f.name) for f in fields}
        values = {
            f.name: {k: v for k, v in data.items() if k not in named}
            if f.metadata.get(REST)
            else read(hints[f.name], data[f.metadata.get(JSON, f.name)])
            for f in fields
            if f.metadata.get(REST) or f.metadata.get(JSON, f.name) in data or f.default is dataclasses.MISSING
        }
        return kind(**values)
    origin = typing.get_origin(kind)
    if origin is types.UnionType:  # X | None: X
        return read(next(arg for arg in typing.get_args(kind) if arg is not type(None)), data)
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

    # -- persons ---------------------------------------------------------------------------

    def list_persons(self, offset: int = 0, limit: int = 50) -> PersonPage:
        """``GET /persons``: one page of the key's persons, named ones first."""
        return read(PersonPage, self._call("GET", "/persons", params={"offset": offset, "limit": limit}))

    def create_person(
        self,
        name: str,
        face_ids: Iterable[int] | None = None,
        photo: Photo | None = None,
        *,
        url: str | None = None,
        metadata: dict | None = None,
    ) -> Person:
        """``POST /persons``: a named person of these faces, or of the largest face of a photo
        (bytes, a path, or ``url=``), which is stored as ``add_image`` stores it."""
        body: dict[str, Any] = {"name": name}
        if metadata is not None:
            body["metadata"] = metadata
        if face_ids is not None:
            body["face_ids"] = list(face_ids)
        elif url is not None:
            body["image"] = {"url": url}
        elif photo is not None:
            body["image"] = {"base64": base64.b64encode(_photo_bytes(photo)).decode()}
        else:
            raise ValueError("give face_ids, a photo (bytes or a path) or url=")
        return read(Person, self._call("POST", "/persons", json=body)["result"])

    def get_person(self, person_id: int) -> Person:
        """``GET /persons/<id>``."""
        return read(Person, self._call("GET", f"/persons/{person_id}")["result"])

    def update_person(self, person_id: int, name: str | None = None, metadata: dict | None = None) -> Person:
        """``PUT /persons/<id>``: rename it, or replace its metadata (what is None stays)."""
        body = {key: value for key, value in (("name", name), ("metadata", metadata)) if value is not None}
        return read(Person, self._call("PUT", f"/persons/{person_id}", json=body)["result"])

    def delete_person(self, person_id: int, forget: bool = False) -> PersonDeleted:
        """``DELETE /persons/<id>``: the person goes and its faces stay, in no person; with
        ``forget``, its faces are deleted from the gallery and every index, and the photos left
        with no face are deleted (the request to delete someone's biometric data)."""
        return read(PersonDeleted, self._call("DELETE", f"/persons/{person_id}", json={"forget": forget}))

    def person_images(self, person_id: int, offset: int = 0, limit: int = 50) -> PersonImagePage:
        """``GET /persons/<id>/images``: the person's photos, newest first."""
        query = {"offset": offset, "limit": limit}
        return read(PersonImagePage, self._call("GET", f"/persons/{person_id}/images", params=query))

    def merge_persons(self, person_id: int, others: Iterable[int]) -> Person:
        """``POST /persons/<id>/merge``: fold the others into this person."""
        return read(Person, self._call("POST", f"/persons/{person_id}/merge", json={"ids": list(others)})["result"])

    def move_faces(self, person_id: int, face_ids: Iterable[int], from_person: Any = ANYWHERE) -> Person:
        """``POST /persons/<id>/faces``: put the faces in this person, from wherever they are;
        with ``from_person`` (a person's id, or None for no person), only if they are there now
        (else code 18 and nothing changes: another client moved them first)."""
        body: dict[str, Any] = {"face_ids": list(face_ids)}
        if from_person is not ANYWHERE:
            body["from"] = from_person
        return read(Person, self._call("POST", f"/persons/{person_id}/faces", json=body)["result"])

    def take_out_faces(self, person_id: int, face_ids: Iterable[int]) -> Person | None:
        """``DELETE /persons/<id>/faces`` (split): the person as left, None if no face is left."""
        body = {"face_ids": list(face_ids)}
        return read(Person, self._call("DELETE", f"/persons/{person_id}/faces", json=body)["result"])

    def search_persons(
        self,
        photo: Photo | None = None,
        *,
        url: str | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
    ) -> list[PersonHit]:
        """``POST /persons/search``: the persons the query's largest face matches, best first, by
        every face of each (the default threshold is calibrated for persons)."""
        if url is not None:
            image = {"url": url}
        elif photo is not None:
            image = {"base64": base64.b64encode(_photo_bytes(photo)).decode()}
        else:
            raise ValueError("give the photo (bytes or a path) or url=")
        options = {key: value for key, value in (("top_k", top_k), ("threshold", threshold)) if value is not None}
        return read(list[PersonHit], self._call("POST", "/persons/search", json={"image": image, **options})["result"])

    def group_faces(self, full: bool = False, wait: bool = False, poll_seconds: float = 0.5) -> Job:
        """``POST /persons/cluster``: start a grouping run (or find the one under way), and with
        ``wait`` wait for it to end; the job."""
        started = self._call("POST", "/persons/cluster", json={"full": full})["result"]["job"]
        job = self.get_job(started)
        while wait and not job.ended:
            time.sleep(poll_seconds)
            job = self.get_job(started)
        return job

    def get_job(self, job_id: int) -> Job:
        """``GET /jobs/<id>``: a job's state and progress."""
        return read(Job, self._call("GET", f"/jobs/{job_id}")["result"])

    def face_thumbnail(self, face_id: int) -> bytes:
        """``GET /faces/<id>/thumbnail``: a small JPEG of one face."""
        return self._request("GET", f"/faces/{face_id}/thumbnail").content

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
