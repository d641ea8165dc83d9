"""Records to the JSON shapes of the API."""

from __future__ import annotations

from flask import url_for

from index.records import ImageRecord

from .search import FaceHits, Hit


def photo_url(image_id: int) -> str:
    return url_for("api.photo", image_id=image_id, _external=True)


def image_summary(record: ImageRecord) -> dict:
    """An image as listed: its faces as a count."""
    return {
        "id": record.id,
        "url": photo_url(record.id),
        "metadata": record.metadata,
        "faces": len(record.faces),
        "created_at": record.created_at,
    }


def image_detail(record: ImageRecord) -> dict:
    """An image as added or read: every face with its box and detection score."""
    faces = [{"id": face.id, "bbox": face.bbox, "score": face.score} for face in record.faces]
    return {**image_summary(record), "faces": faces}


def hit(found: Hit) -> dict:
    return {
        "id": found.image.id,
        "url": photo_url(found.image.id),
        "metadata": found.image.metadata,
        "score": found.score,
        "bbox": found.bbox,
    }


def face_hits(answer: FaceHits) -> dict:
    """One face of the query photo (its box and detection score) and the images it matched."""
    return {
        "bbox": answer.face.box(),
        "score": round(answer.face.detection.score, 4),
        "results": [hit(h) for h in answer.hits],
    }
