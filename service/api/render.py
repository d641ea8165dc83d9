"""The use cases' results to the JSON shapes of the API (``service.api.responses``)."""

from __future__ import annotations

from dataclasses import asdict

from flask import url_for

from ..core.maintenance import IndexStatus
from ..core.search import FaceMatches, Match
from ..core.views import Image


def photo_url(image_id: int) -> str:
    return url_for("api.photo", image_id=image_id, _external=True)


def image_summary(record: Image) -> dict:
    """An image as listed: its faces as a count."""
    return {
        "id": record.id,
        "url": photo_url(record.id),
        "metadata": record.metadata,
        "faces": len(record.faces),
        "created_at": record.created_at,
    }


def image_detail(record: Image) -> dict:
    """An image as added or read: every face with its box and detection score."""
    faces = [{"id": face.id, "bbox": face.bbox, "score": face.score} for face in record.faces]
    return {**image_summary(record), "faces": faces}


def match(found: Match) -> dict:
    return {
        "id": found.image.id,
        "url": photo_url(found.image.id),
        "metadata": found.image.metadata,
        "score": found.score,
        "bbox": found.bbox,
    }


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
