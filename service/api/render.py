"""The use cases' results to the JSON shapes of the API (``service.api.responses``)."""

from __future__ import annotations

from dataclasses import asdict

from flask import g, url_for

from ..core.maintenance import IndexStatus
from ..core.search import FaceMatches, Match
from ..core.views import Collection, Image
from .context import use_cases
from .requests import MAX_ID

# An image's links: the field that carries each, the endpoint serving it and the rendition it names.
LINKS = {"url": ("api.photo", "file"), "thumbnail_url": ("api.thumbnail", "thumbnail")}


def links(image: Image) -> dict[str, str]:
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
    return signed


def collection_of(image: Image) -> dict:
    """The image's collection, as a field of its answers; none for the default collection, so
    that a client that never names one sees the answers it saw before collections existed."""
    name = image.named_collection
    return {} if name is None else {"collection": name}


def image_summary(record: Image) -> dict:
    """An image as listed: its faces as a count."""
    return {
        "id": record.id,
        **links(record),
        "metadata": record.metadata,
        "faces": len(record.faces),
        "created_at": record.created_at,
        **collection_of(record),
    }


def image_detail(record: Image) -> dict:
    """An image as added or read: every face with its box and detection score."""
    faces = [{"id": face.id, "bbox": face.bbox, "score": face.score} for face in record.faces]
    return {**image_summary(record), "faces": faces}


def match(found: Match) -> dict:
    return {
        "id": found.image.id,
        **links(found.image),
        "metadata": found.image.metadata,
        "score": found.score,
        "bbox": found.bbox,
        **collection_of(found.image),
    }


def collection(found: Collection) -> dict:
    return {"name": found.name, "images": found.images, "faces": found.faces}


def face_matches(answer: FaceMatches) -> dict:
    """One face of the query photo (its box and detection score) and the images it matched."""
    return {
        "bbox": answer.face.box(),
        "score": round(answer.face.detection.score, 4),
        "results": [match(m) for m in answer.matches],
    }


def status(state: IndexStatus) -> dict:
    """A gallery's index: kind and size always, what it is made of once it holds a vector."""
    shown = {"kind": state.kind, "vectors": state.vectors}
    if state.details is not None:
        shown.update(asdict(state.details))
    adoption = {"committed_generation": state.committed_generation, "adopted": state.adopted}
    return {**shown, "rebuilding": state.rebuilding, "generation": state.generation, **adoption}
