"""Re-embedding a gallery with another model pack, swapped in at once when complete.

The new pack runs over the stored photos and its vectors are staged in the catalog beside
the serving ones (resumable: a stopped run continues where it was). Then the vector
index swaps them in: it indexes the staged vectors and one catalog write replaces every
face vector, the gallery's pack and its index together; until that write the gallery
serves, and accepts faces of, the old pack only.

Faces keep their ids: each stored face is matched to the new detector's face that
overlaps it most. A face the new detector does not find again is removed at the swap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from index.records import FaceInfo, KeyRecord
from models.analyzer import FaceAnalyzer
from models.detector import iou
from models.faces import Face
from models.packs import load_pack

from .errors import GalleryBusy, NotAPhoto, PhotoMissing, writing
from .services import Services

MIN_OVERLAP = 0.5  # intersection over union for a new detection to be the same face


@dataclass
class ReembedSummary:
    images: int = 0  # re-embedded in this run
    faces: int = 0
    lost: int = 0  # stored faces the new pack's detector did not find again
    seconds: float = 0.0
    pack: str = ""


def match_faces(stored: list[FaceInfo], found: list[Face]) -> dict[int, np.ndarray]:
    """Stored face id to the embedding of the new face overlapping it most (each used once)."""
    if not stored or not found:
        return {}
    boxes = np.array([new.box() for new in found], np.float32)
    pairs = sorted(
        (
            (float(score), face.id, index)
            for face in stored
            for index, score in enumerate(iou(np.asarray(face.bbox, np.float32), boxes))
        ),
        reverse=True,
    )
    matched: dict[int, np.ndarray] = {}
    used: set[int] = set()
    for score, face_id, index in pairs:
        if score < MIN_OVERLAP:
            break
        if face_id not in matched and index not in used:
            matched[face_id] = found[index].embedding
            used.add(index)
    return matched


def _photos(services: Services, records: list) -> list[bytes]:
    """The stored photos of ``records``; a missing one stops the run (nothing is swapped)."""
    try:
        return [services.photos.read(record.file) for record in records]
    except FileNotFoundError as exc:
        raise PhotoMissing(f"a stored photo is missing ({exc.filename}); nothing was swapped") from exc


def stage(
    services: Services, key: KeyRecord, analyzer: FaceAnalyzer, batch: int, summary: ReembedSummary, advance: Callable
) -> None:
    """Re-embed every image of the gallery not staged for the pack yet."""
    images, staging, gid, pack = services.catalog.images, services.catalog.staging, key.gallery, analyzer.pack_name
    done = staging.staged_images(gid, pack)
    todo = [image_id for image_id in images.ids(gid) if image_id not in done]
    for start in range(0, len(todo), batch):
        records = images.get_many(gid, todo[start : start + batch])
        records = [records[image_id] for image_id in todo[start : start + batch] if image_id in records]
        for record, found in zip(records, analyzer.faces_in_many(_photos(services, records)), strict=True):
            if found is None:
                raise NotAPhoto(f"the stored photo of image {record.id} ({record.file}) cannot be decoded")
            matched = match_faces(record.faces, found)
            with writing():
                staging.stage(gid, record.id, pack, matched)
            summary.images += 1
            summary.faces += len(matched)
            summary.lost += len(record.faces) - len(matched)
        advance(len(records))


def reembed(
    services: Services,
    key: KeyRecord,
    pack_name: str,
    batch: int = 16,
    advance: Callable[[int], object] = lambda n: None,
) -> ReembedSummary:
    """Re-embed the key's gallery with ``pack_name`` and swap the vectors in atomically."""
    started = time.monotonic()
    analyzer = FaceAnalyzer(load_pack(pack_name), services.settings.model_threads)
    summary = ReembedSummary(pack=analyzer.pack_name)
    if services.catalog.images.gallery(key.gallery).pack in (None, analyzer.pack_name):
        return summary  # already in that pack, or empty: any pack may fill it
    with services.indexes.exclusive(key.gallery) as held:
        if not held:
            raise GalleryBusy(f"gallery {key.gallery} is being rebuilt or re-embedded by another process")
        while True:
            stage(services, key, analyzer, batch, summary, advance)
            with writing():
                if services.indexes.swap(key.gallery, analyzer.pack_name, analyzer.dim):
                    break
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
