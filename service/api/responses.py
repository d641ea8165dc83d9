"""Each answer's shape, and how it is made from what a use case returns: the one place an
answer is written.

A view returns one of the answers below (``ImagePage``, ``SearchAnswer``, ...): its
``result`` and the fields beside it, which ``envelope.success`` sends after the code and
message. The OpenAPI document shows each with those fields added (``enveloped``), and
tests/system/test_schemathesis.py checks every answer a live server gives against it. The
types are TypedDicts, so an answer costs no more than the dict it is; mypy checks each
one made here against its type, field by field.
"""

# no ``from __future__ import annotations``: pydantic reads these annotations as objects

import types
from typing import Annotated, Any, Literal, NotRequired, TypeVar

from flask import g, url_for
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from ..core.images import THUMBNAIL_SIDE
from ..core.jobs import Job as JobState
from ..core.maintenance import IndexStatus
from ..core.persons import PersonMatch, PersonPhoto
from ..core.search import FaceMatches, Match
from ..core.views import Collection, Image, PersonRef, StoredFace
from ..core.views import Cover as CoverFace
from ..core.views import Person as PersonView
from .context import use_cases
from .envelope import CODE_FIELDS
from .errors import Code
from .requests import MAX_ID

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


_Success = TypedDict("_Success", _code_fields(Literal[0]))  # type: ignore[misc]  # fields made from CODE_FIELDS


def enveloped(answer: type) -> type:
    """The whole answer as the document shows it: the code and message, then ``answer``'s fields."""
    return types.new_class(answer.__name__, (_Success, answer))


Refusal = TypedDict("Refusal", {"result": None, **_code_fields(ErrorCode)})  # type: ignore[misc]
Refusal.__doc__ = "The envelope of every refusal."


# -- an image, and its signed links --------------------------------------------------------------

# An image's links: the field that carries each, the endpoint serving it and the rendition it names.
LINKS = {"url": ("api.photo", "file"), "thumbnail_url": ("api.thumbnail", "thumbnail")}
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


class Links(TypedDict):
    url: Url
    thumbnail_url: ThumbnailUrl


def links(image: Image) -> Links:
    """The signed links of one of the key's images: each works without credentials until it
    expires (service/core/links.py); its owner may also load the same address with the key."""
    if "signer" not in g:  # once per answer: one secret read, every link expiring alike
        g.signer = use_cases().links.signer()
        # each endpoint's address is built once, around a placeholder id: url_for for every
        # link of a page would cost more than signing them
        g.addresses = {
            endpoint: url_for(endpoint, image_id=MAX_ID, _external=True).rpartition(str(MAX_ID))[::2]
            for endpoint, _ in LINKS.values()
        }
    signed = {}
    for field, (endpoint, rendition) in LINKS.items():
        link, signature = g.signer.sign(g.key.gallery, image.id, rendition)
        before, after = g.addresses[endpoint]
        signed[field] = f"{before}{image.id}{after}?gallery={link.gallery}&expires={link.expires}&signature={signature}"
    return Links(url=signed["url"], thumbnail_url=signed["thumbnail_url"])


class PersonName(TypedDict):
    id: int
    name: Annotated[str, Field(description="Empty for a person a grouping run found and nobody named.")]


InPerson = Annotated[PersonName | None, Field(description="The person the face is in (null: none).")]


def person_name(person: PersonRef | None) -> PersonName | None:
    return None if person is None else PersonName(id=person.id, name=person.name)


class StoredFaceOut(TypedDict):
    id: int
    bbox: Box
    score: Annotated[float, Field(description="Detection score.")]


def stored_face(face: StoredFace) -> StoredFaceOut:
    return StoredFaceOut(id=face.id, bbox=face.bbox, score=face.score)


class FaceOut(StoredFaceOut):
    person: InPerson


class _Stored(TypedDict):
    """What every answer about a stored image carries."""

    id: int
    url: Url
    thumbnail_url: ThumbnailUrl
    metadata: dict[str, Any]
    collection: NotRequired[Annotated[str, Field(description="The image's collection; absent for the default one.")]]


StoredT = TypeVar("StoredT", bound=_Stored)


def in_collection(answer: StoredT, image: Image) -> StoredT:
    """The answer with the image's collection, none for the default collection: a client that
    never names one sees the answers it saw before collections existed."""
    if image.named_collection is not None:
        answer["collection"] = image.named_collection
    return answer


class ImageSummary(_Stored):
    """An image as listed: its faces as a count."""

    faces: Annotated[int, Field(description="How many faces are indexed.")]
    created_at: Annotated[str, Field(description="ISO 8601, UTC.")]


def image_summary(image: Image) -> ImageSummary:
    summary = ImageSummary(
        id=image.id, **links(image), metadata=image.metadata, faces=len(image.faces), created_at=image.created_at
    )
    return in_collection(summary, image)


class ImageDetail(_Stored):
    """An image as added or read: every face with its box and detection score."""

    faces: list[FaceOut]
    created_at: str


def image_detail(image: Image) -> ImageDetail:
    faces = [FaceOut(**stored_face(face), person=person_name(face.person)) for face in image.faces]
    detail = ImageDetail(id=image.id, **links(image), metadata=image.metadata, faces=faces, created_at=image.created_at)
    return in_collection(detail, image)


# -- search hits ---------------------------------------------------------------------------------


class Hit(_Stored):
    """A stored image that matched: the score and box of its best-matching face."""

    score: Annotated[Score, Field(description="Cosine similarity of the best-matching face in this image.")]
    bbox: Annotated[Box, Field(description="The best-matching face in the stored image.")]
    person: InPerson


def hit(found: Match) -> Hit:
    image = found.image
    person = person_name(image.face(found.face_id).person)
    hit = Hit(id=image.id, **links(image), metadata=image.metadata, score=found.score, bbox=found.bbox, person=person)
    return in_collection(hit, image)


class FaceHits(TypedDict):
    """One face of the query photo and the images it matched (``face: "all"``)."""

    bbox: Box
    score: Annotated[float, Field(description="Detection score of the query face.")]
    results: list[Hit]


def face_hits(answer: FaceMatches) -> FaceHits:
    return FaceHits(
        bbox=answer.face.box(), score=round(answer.face.detection.score, 4), results=[hit(m) for m in answer.matches]
    )


# -- collections ---------------------------------------------------------------------------------


class CollectionOut(TypedDict):
    """One collection of the key's gallery and what it holds."""

    name: str
    images: int
    faces: int


def collection(found: Collection) -> CollectionOut:
    return CollectionOut(name=found.name, images=found.images, faces=found.faces)


# -- a gallery's index ---------------------------------------------------------------------------


class _IndexSize(TypedDict):
    kind: Annotated[str, Field(description="flat (exact) or ivf (trained on the gallery); hnsw in cluster mode.")]
    vectors: int


class IndexDetails(TypedDict, total=False):
    """What a gallery's index is made of, once it holds a vector (the terms are those of
    docs/architecture.md's glossary)."""

    dim: int
    lists: Annotated[int, Field(description="IVF lists (0: exact).")]
    nprobe: Annotated[int, Field(description="Lists a query scans.")]
    storage: Annotated[str, Field(description="How the index stores the vectors.")]
    trained_on: Annotated[int, Field(description="Vectors the IVF was trained on.")]
    churn_since_training: Annotated[float, Field(description="Share of the IVF added or removed since it was trained.")]
    last_rebuild: Annotated[str | None, Field(description="When the index was last rebuilt, ISO 8601, UTC.")]
    seq: Annotated[int, Field(description="How far into the gallery's change log the index is.")]
    rebuild_needed: Annotated[str | None, Field(description="Why a rebuild is due, if one is.")]
    second_code: Annotated[int, Field(description="Bytes per face of the code that ranks candidates (0: none).")]


class _Adoption(TypedDict):
    rebuilding: bool
    generation: Annotated[int, Field(description="The generation this process searches.")]
    committed_generation: Annotated[int, Field(description="The generation the catalog has committed.")]
    adopted: Annotated[bool, Field(description="This process searches the committed generation.")]


class IndexState(_IndexSize, IndexDetails, _Adoption):
    """A gallery's index: its kind and size, what it is made of, and its generation."""


def gallery_index(state: IndexStatus) -> IndexState:
    d = state.details
    details = IndexDetails() if d is None else IndexDetails(
        dim=d.dim, lists=d.lists, nprobe=d.nprobe, storage=d.storage, trained_on=d.trained_on,
        churn_since_training=d.churn_since_training, last_rebuild=d.last_rebuild, seq=d.seq,
        rebuild_needed=d.rebuild_needed, second_code=d.second_code,
    )  # fmt: skip
    return IndexState(
        kind=state.kind,
        vectors=state.vectors,
        **details,
        rebuilding=state.rebuilding,
        generation=state.generation,
        committed_generation=state.committed_generation,
        adopted=state.adopted,
    )


# -- persons and jobs ----------------------------------------------------------------------------


class Cover(TypedDict):
    """The face that shows the person: its photo and its box there (`GET /faces/<id>/thumbnail`)."""

    image_id: int
    face_id: int
    bbox: Box


def cover(shown: CoverFace) -> Cover:
    return Cover(image_id=shown.image_id, face_id=shown.face_id, bbox=shown.bbox)


class Person(TypedDict):
    id: int
    name: Annotated[str, Field(description="Empty for a person a grouping run found and nobody named.")]
    metadata: dict[str, Any]
    faces: Annotated[int, Field(description="Its faces, each of another photo.")]
    images: Annotated[int, Field(description="Its photos.")]
    cover: Cover | None


def person(found: PersonView) -> Person:
    shown = None if found.cover is None else cover(found.cover)
    return Person(
        id=found.id, name=found.name, metadata=found.metadata, faces=found.faces, images=found.images, cover=shown
    )


class PersonImage(ImageSummary):
    """A photo of a person: the image as listed, and the person's face in it."""

    face: StoredFaceOut


def person_image(photo: PersonPhoto) -> PersonImage:
    image = photo.image
    return PersonImage(**image_summary(image), face=stored_face(image.face(photo.face_id)))


class PersonHit(Person):
    score: Annotated[Score, Field(description="Cosine similarity of the person's face nearest the query.")]
    face: Annotated[Cover, Field(description="That face.")]


def person_hit(found: PersonMatch) -> PersonHit:
    return PersonHit(**person(found.person), score=found.score, face=cover(found.nearest))


class Job(TypedDict):
    id: int
    kind: Annotated[str, Field(description="group_faces: a grouping run.")]
    state: Literal["queued", "running", "done", "failed"]
    done: Annotated[int, Field(description="Steps done (faces looked at, then faces placed).")]
    total: Annotated[int, Field(description="Steps known so far; it may grow while the job runs.")]
    error: NotRequired[str]


def job(state: JobState) -> Job:
    shown = Job(id=state.id, kind=state.kind, state=state.state, done=state.done, total=state.total)  # type: ignore[typeddict-item]
    if state.error:
        shown["error"] = state.error
    return shown


class JobStarted(TypedDict):
    job: Annotated[int, Field(description="The job's id: GET /jobs/<id> tells how it goes.")]


# -- the answers views return --------------------------------------------------------------------


class ImageAnswer(TypedDict):
    result: ImageDetail


class ImagePage(TypedDict):
    result: list[ImageSummary]
    total: int
    offset: int
    limit: int


class SearchAnswer(TypedDict):
    result: Annotated[
        list[Hit] | list[FaceHits],
        Field(description='One list of images; with face "all", one entry per query face.'),
    ]


class DeleteAnswer(TypedDict):
    result: None
    deleted: int
    deleted_ids: list[int]


class CollectionsAnswer(TypedDict):
    result: list[CollectionOut]


class CollectionDeleteAnswer(TypedDict):
    result: None
    deleted: Annotated[int, Field(description="The images deleted (0: no such collection).")]


class IndexAnswer(TypedDict):
    result: IndexState


class PersonAnswer(TypedDict):
    result: Person


class MaybePersonAnswer(TypedDict):
    result: Annotated[Person | None, Field(description="null: the person was left with no face and removed.")]


class PersonPage(TypedDict):
    result: list[Person]
    total: int
    offset: int
    limit: int


class PersonImagePage(TypedDict):
    result: list[PersonImage]
    total: int
    offset: int
    limit: int


class PersonDeleteAnswer(TypedDict):
    result: None
    deleted_faces: Annotated[list[int], Field(description="With forget: the faces deleted (else none).")]
    deleted_images: Annotated[list[int], Field(description="With forget: the photos left with no face, deleted.")]


class PersonSearchAnswer(TypedDict):
    result: list[PersonHit]


class JobAnswer(TypedDict):
    result: Job


class JobStartedAnswer(TypedDict):
    result: JobStarted


class Health(TypedDict):
    """Not in the envelope: what load balancers read."""

    status: Literal["ok", "unavailable"]
    checks: NotRequired[dict[str, bool]]
    pack: NotRequired[str]  # /healthz: the model pack served, and its weights' licence
    licence: NotRequired[str]
