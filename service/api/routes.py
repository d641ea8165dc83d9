"""The API's endpoints, each declared once (service/api/operations.py): read the typed
request, call the use case, return the answer.

Two families of paths reach the same views: the Face Search API v2 (``api``), and the
vendor's earlier v1 paths (``v1``: each v2 operation's ``alias``) that deployed clients
still call, with the same envelope, credentials, throttles and metrics (docs/vendor-api.md).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from flask import Response, g, request

from ..core import requests as core
from ..core.filters import collection_name
from ..core.links import Link
from .auth import authenticate
from .context import app, use_cases
from .errors import ApiError, Code
from .operations import Routes
from .paths import API, V1
from .requests import (
    ADD_OR_DELETE,
    MAX_ID,
    AddImageUpload,
    CollectionName,
    DeleteImages,
    EditMetadata,
    FacesIn,
    FacesOut,
    Grouping,
    Id,
    ImageId,
    LinkQuery,
    ListQuery,
    MetadataUpdate,
    NewPerson,
    PersonChange,
    PersonDelete,
    PersonMerge,
    PersonSearch,
    Search,
    SearchUpload,
    read,
)
from .responses import (
    LINKS,
    CollectionDeleteAnswer,
    CollectionsAnswer,
    DeleteAnswer,
    ImageAnswer,
    ImagePage,
    IndexAnswer,
    JobAnswer,
    JobStarted,
    JobStartedAnswer,
    MaybePersonAnswer,
    PersonAnswer,
    PersonDeleteAnswer,
    PersonImagePage,
    PersonPage,
    PersonSearchAnswer,
    SearchAnswer,
    collection,
    face_hits,
    gallery_index,
    hit,
    image_detail,
    image_summary,
    job,
    person,
    person_hit,
    person_image,
)

v1 = Routes("v1", __name__, V1, tag="v1")
api = Routes("api", __name__, API, tag="images", aliases=v1)
IMAGE = f"/images/<int(max={MAX_ID}):image_id>"
PERSON = f"/persons/<int(max={MAX_ID}):person_id>"
LINKED = {endpoint: rendition for endpoint, rendition in LINKS.values()}  # what a signed link opens

# the codes of a request that sends a photo, and of one that names an image
PHOTO = (Code.NO_CONTENT, Code.URL_UNAVAILABLE, Code.NO_FACE, Code.BAD_FORMAT_TYPE, Code.BAD_REQUEST, Code.TOO_LARGE)
BY_ID = (Code.NOT_FOUND, Code.NO_ROUTE)
A_PERSON = (Code.NO_PERSON, Code.NO_ROUTE)
LINK_OPENS = (
    "Served to the key's owner (Basic auth), or to anyone holding the signed link an answer gave (its `gallery`, "
    "`expires` and `signature`), without credentials until it expires; an expired, altered or foreign link is "
    "code 14 (403). Through a link the answer may be cached until the link expires and embedded by any site "
    "(`Cross-Origin-Resource-Policy: cross-origin`)."
)


def admit() -> None:
    """A photo's signed link lets whoever holds it have that photo (or its thumbnail) without
    a key; every other request, and one that carries credentials, is the key owner's."""
    rendition = LINKED.get(request.endpoint or "")
    if rendition is not None and not LinkQuery.__required_keys__.isdisjoint(request.args):
        sent = read(LinkQuery, request.args, app().settings.limits)  # malformed: code 7, whoever asks
        if "Authorization" not in request.headers:
            image_id = (request.view_args or {})["image_id"]
            g.link = Link(sent["gallery"], image_id, rendition, sent["expires"])
            use_cases().links.verify(g.link, sent["signature"])
            return
    authenticate()


api.before_request(admit)
v1.before_request(authenticate)


def gallery() -> int:
    """The gallery this request may read: the key's, or the one its signed link names."""
    link: Link | None = g.get("link")
    return link.gallery if link is not None else g.key.gallery


@api.operation(
    "GET", "/images", query=ListQuery, answer=ImagePage, codes=(Code.BAD_REQUEST,),
    summary="List the key's images, oldest first", alias="GET /get_all_images",
)  # fmt: skip
def list_images(query: core.Page) -> ImagePage:
    images, total = use_cases().gallery.page(g.key, query)
    return ImagePage(result=[image_summary(i) for i in images], total=total, offset=query.offset, limit=query.limit)


@api.operation(
    "GET", "/collections", answer=CollectionsAnswer, summary="The key's collections with their images and faces",
    description="Every collection of the key's gallery that holds an image, by name; images added without a "
    "collection are in `default`.",
)  # fmt: skip
def list_collections() -> CollectionsAnswer:
    return CollectionsAnswer(result=[collection(found) for found in use_cases().gallery.collections(g.key)])


@api.operation(
    "DELETE", "/collections/<path:name>", answer=CollectionDeleteAnswer, codes=(Code.BAD_REQUEST, Code.NO_ROUTE),
    summary="Delete a collection and its images",
    description="Deletes every image of the collection with its faces, vectors and files, a batch at a time, then "
    "compacts the index; `deleted` counts the images (0: no such collection). Interrupted, it leaves the rest of "
    "the collection: call it again.",
)  # fmt: skip
def delete_collection(name: CollectionName) -> CollectionDeleteAnswer:
    request = core.DeleteCollection(collection_name(name, app().settings.limits))
    return CollectionDeleteAnswer(result=None, deleted=use_cases().gallery.delete_collection(g.key, request))


@api.operation(
    "POST", "/images", body=ADD_OR_DELETE, upload=AddImageUpload, answer=ImageAnswer | DeleteAnswer,
    codes=(*PHOTO, Code.PACK_MISMATCH), summary="Add a photo (or, with ids, delete images)", alias="POST /add",
    description="Stores the photo and indexes every face in it, so a group photo is found by each of its people. "
    "No face: code 3 and nothing is stored. A body with `ids` and no `image` deletes those images, as the "
    "documented demos send it.",
)  # fmt: skip
def add_image(body: core.AddImage | core.DeleteImages) -> ImageAnswer | DeleteAnswer:
    if isinstance(body, core.DeleteImages):
        return delete_images(body)
    return ImageAnswer(result=image_detail(use_cases().adder.add(g.key, body)))


@api.operation(
    "DELETE", "/images", body=DeleteImages, answer=DeleteAnswer, codes=(Code.BAD_REQUEST, Code.TOO_LARGE),
    summary="Delete images by id", alias="POST /delete",
    description="Deletes the images with their faces, vectors, files and metadata; ids that are unknown or belong "
    "to another key are skipped. No later list or search shows them.",
)  # fmt: skip
def delete_images(body: core.DeleteImages) -> DeleteAnswer:
    deleted = use_cases().gallery.delete(g.key, body)
    return DeleteAnswer(result=None, deleted=len(deleted), deleted_ids=deleted)


@api.operation("GET", IMAGE, answer=ImageAnswer, codes=BY_ID, summary="Read one image")
def get_image(image_id: ImageId) -> ImageAnswer:
    return ImageAnswer(result=image_detail(use_cases().gallery.get(g.key, image_id)))


@api.operation(
    ("PUT", "POST"), IMAGE, body=MetadataUpdate, answer=ImageAnswer, codes=(*BY_ID, Code.BAD_REQUEST, Code.TOO_LARGE),
    summary="Replace an image's metadata, move it to another collection, or both",
)  # fmt: skip
def update_image(image_id: ImageId, body: tuple[dict[str, Any] | None, str | None]) -> ImageAnswer:
    metadata, moved_to = body
    return update(core.ImageUpdate(image_id, metadata, moved_to))


@v1.operation(
    "POST", "/edit_metadata", body=EditMetadata, answer=ImageAnswer,
    codes=(Code.NOT_FOUND, Code.BAD_REQUEST, Code.TOO_LARGE),
    summary="Replace an image's metadata, the image named by image_id in the body",
)  # fmt: skip
def edit_metadata(body: core.ImageUpdate) -> ImageAnswer:
    return update(body)


def update(change: core.ImageUpdate) -> ImageAnswer:
    return ImageAnswer(result=image_detail(use_cases().gallery.update(g.key, change)))


@api.operation(
    "GET", f"{IMAGE}/file", answer="image/*", codes=(*BY_ID, Code.BAD_REQUEST, Code.BAD_LINK), linked=True,
    summary="The stored photo's bytes (an image's url)", description=LINK_OPENS,
)  # fmt: skip
def photo(image_id: ImageId) -> Response:
    return picture(*use_cases().gallery.photo(gallery(), image_id))


@api.operation(
    "GET", f"{IMAGE}/thumbnail", answer="image/jpeg", codes=(*BY_ID, Code.BAD_REQUEST, Code.BAD_LINK),
    linked=True, summary="A small JPEG of the stored photo (an image's thumbnail_url)",
    description=LINK_OPENS + " Made on the first request and kept beside the photo.",
)  # fmt: skip
def thumbnail(image_id: ImageId) -> Response:
    return picture(use_cases().gallery.thumbnail(gallery(), image_id), "image/jpeg")


def picture(data: bytes, mime: str) -> Response:
    """A photo's bytes. Through a signed link: cached no longer than the link works, and
    embeddable by other sites' pages (``Cross-Origin-Resource-Policy``), which is its purpose."""
    response = Response(data, mimetype=mime)
    response.headers["X-Content-Type-Options"] = "nosniff"
    link: Link | None = g.get("link")
    if link is not None:
        response.headers["Cache-Control"] = f"private, max-age={max(0, link.expires - int(time.time()))}"
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    else:
        response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@api.operation(
    "POST", "/search", body=Search, upload=SearchUpload, answer=SearchAnswer, codes=(*PHOTO, Code.PACK_MISMATCH),
    summary="Search the gallery with a photo", alias="POST /search",
    description="Detects the faces of the query photo and answers the key's images holding a matching face, best "
    "first, one entry per image, with the score and box of that image's best-matching face. `collection`, `filter`, "
    "`created_after` and `created_before` narrow it to some of the images, inside the index (docs/filters.md). No "
    "face in the query: code 3. Empty gallery or no match: an empty list.",
)  # fmt: skip
def search_images(body: core.Search) -> SearchAnswer:
    searcher = use_cases().searcher
    if body.face == "all":
        return SearchAnswer(result=[face_hits(a) for a in searcher.search_each_face(g.key, body)])
    return SearchAnswer(result=[hit(m) for m in searcher.search(g.key, body)])


@api.operation("GET", "/index", answer=IndexAnswer, tag="operations", summary="The gallery's vector index")
def index_state() -> IndexAnswer:
    return IndexAnswer(result=gallery_index(use_cases().maintenance.index_status(g.key)))


# -- persons -------------------------------------------------------------------------------------


@api.operation(
    "GET", "/persons", query=ListQuery, answer=PersonPage, codes=(Code.BAD_REQUEST,), tag="persons",
    summary="List the key's persons, named ones first",
    description="Named persons first (by name), then the unnamed ones a grouping run found (oldest first).",
)  # fmt: skip
def list_persons(query: core.Page) -> PersonPage:
    found, total = use_cases().persons.page(g.key, query)
    return PersonPage(result=[person(p) for p in found], total=total, offset=query.offset, limit=query.limit)


@api.operation(
    "POST", "/persons", body=NewPerson, answer=PersonAnswer, tag="persons",
    codes=(*PHOTO, Code.PACK_MISMATCH, Code.NO_SUCH_FACE, Code.CONFLICT),
    summary="Name a person: of faces, or of a photo's largest face",
    description="With `face_ids`: those faces (taken from whatever person held them) make the new person; "
    "with `image`: the photo is added as `POST /images` adds it and its largest face makes the person. "
    "Two faces of one photo cannot be one person: code 18.",
)  # fmt: skip
def create_person(body: core.NewPerson) -> PersonAnswer:
    return PersonAnswer(result=person(use_cases().persons.create(g.key, body)))


@api.operation("GET", PERSON, answer=PersonAnswer, codes=A_PERSON, tag="persons", summary="Read one person")
def get_person(person_id: Id) -> PersonAnswer:
    return PersonAnswer(result=person(use_cases().persons.get(g.key, person_id)))


@api.operation(
    "PUT", PERSON, body=PersonChange, answer=PersonAnswer, codes=(*A_PERSON, Code.BAD_REQUEST, Code.TOO_LARGE),
    tag="persons", summary="Rename a person or replace its metadata",
)  # fmt: skip
def update_person(person_id: Id, body: PersonChange) -> PersonAnswer:
    change = core.PersonChange(person_id, body.get("name"), body.get("metadata"))
    return PersonAnswer(result=person(use_cases().persons.update(g.key, change)))


@api.operation(
    "DELETE", PERSON, body=PersonDelete, body_required=False, answer=PersonDeleteAnswer,
    codes=(*A_PERSON, Code.BAD_REQUEST), tag="persons", summary="Delete a person, or forget it",
    description="Without a body: the person goes, its faces stay (in no person; no grouping run groups them "
    "again). With `{\"forget\": true}`: its faces are deleted from the gallery and from every index, and the "
    "photos left with no face are deleted; the answer lists what was removed.",
)  # fmt: skip
def delete_person(person_id: Id, body: bool) -> PersonDeleteAnswer:
    if not body:
        use_cases().persons.delete(g.key, person_id)
        return PersonDeleteAnswer(result=None, deleted_faces=[], deleted_images=[])
    forgot = use_cases().persons.forget(g.key, person_id)
    return PersonDeleteAnswer(result=None, deleted_faces=forgot.faces, deleted_images=forgot.images)


@api.operation(
    "GET", f"{PERSON}/images", query=ListQuery, answer=PersonImagePage, codes=(*A_PERSON, Code.BAD_REQUEST),
    tag="persons", summary="A person's photos, newest first",
    description="`collection`, `filter`, `created_after` and `created_before` narrow them as `GET /images`; "
    "`total` counts the photos they leave.",
)  # fmt: skip
def person_images(person_id: Id, query: core.Page) -> PersonImagePage:
    photos, total = use_cases().persons.photos_of(g.key, person_id, query)
    return PersonImagePage(
        result=[person_image(p) for p in photos], total=total, offset=query.offset, limit=query.limit
    )


@api.operation(
    "POST", f"{PERSON}/merge", body=PersonMerge, answer=PersonAnswer,
    codes=(*A_PERSON, Code.BAD_REQUEST, Code.CONFLICT), tag="persons", summary="Fold other persons into this one",
    description="It keeps its name (or takes the first of theirs). A face of one photo on both sides: code 18.",
)  # fmt: skip
def merge_persons(person_id: Id, body: list[int]) -> PersonAnswer:
    if person_id in body:
        raise ApiError(Code.BAD_REQUEST, "ids: a person cannot be merged into itself")
    return PersonAnswer(result=person(use_cases().persons.merge(g.key, person_id, body)))


@api.operation(
    "POST", f"{PERSON}/faces", body=FacesIn, answer=PersonAnswer,
    codes=(*A_PERSON, Code.BAD_REQUEST, Code.NO_SUCH_FACE, Code.CONFLICT), tag="persons",
    summary="Move faces into a person",
)  # fmt: skip
def move_faces(person_id: Id, body: core.FacesMove) -> PersonAnswer:
    return PersonAnswer(result=person(use_cases().persons.move(g.key, replace(body, person_id=person_id))))


@api.operation(
    "DELETE", f"{PERSON}/faces", body=FacesOut, answer=MaybePersonAnswer,
    codes=(*A_PERSON, Code.BAD_REQUEST, Code.NO_SUCH_FACE, Code.CONFLICT), tag="persons",
    summary="Take faces out of a person (split)", description="No grouping run puts them back in this person.",
)  # fmt: skip
def remove_faces(person_id: Id, body: list[int]) -> MaybePersonAnswer:
    left = use_cases().persons.take_out(g.key, person_id, body)
    return MaybePersonAnswer(result=None if left is None else person(left))


@api.operation(
    "POST", "/persons/search", body=PersonSearch, answer=PersonSearchAnswer, codes=(*PHOTO, Code.PACK_MISMATCH),
    tag="persons", summary="Search the key's persons with a photo",
    description="The query photo's largest face against every face of every person; a person scores as its "
    "face nearest the query. The default threshold is calibrated for the number of faces in persons. "
    "`collection`, `filter`, `created_after` and `created_before` count only the faces of those photos.",
)  # fmt: skip
def search_persons(body: core.PersonSearch) -> PersonSearchAnswer:
    return PersonSearchAnswer(result=[person_hit(m) for m in use_cases().person_searcher.search(g.key, body)])


@api.operation(
    "POST", "/persons/cluster", body=Grouping, body_required=False, answer=JobStartedAnswer,
    codes=(Code.BAD_REQUEST,), tag="persons", summary="Start a grouping run",
    description="Groups the faces no person holds into unnamed persons, in the background; never undoes a "
    "user's edit. A run under way already is answered instead of a second one.",
)  # fmt: skip
def group_faces(body: bool) -> JobStartedAnswer:
    return JobStartedAnswer(result=JobStarted(job=use_cases().jobs.start_grouping(g.key.gallery, body).id))


@api.operation(
    "GET", f"/jobs/<int(max={MAX_ID}):job_id>", answer=JobAnswer, codes=(Code.NO_JOB, Code.NO_ROUTE),
    tag="persons", summary="A job's state and progress",
)  # fmt: skip
def get_job(job_id: Id) -> JobAnswer:
    return JobAnswer(result=job(use_cases().jobs.get(g.key.gallery, job_id)))


@api.operation(
    "GET", f"/faces/<int(max={MAX_ID}):face_id>/thumbnail", answer="image/jpeg",
    codes=(Code.NO_SUCH_FACE, Code.NO_ROUTE), tag="persons", summary="A small JPEG of one face",
)  # fmt: skip
def face_thumbnail(face_id: Id) -> Response:
    return picture(use_cases().gallery.face_thumbnail(g.key.gallery, face_id), "image/jpeg")
