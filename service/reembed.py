"""Re-embedding a gallery with another model pack, swapped in at once when complete.

The new pack runs over the stored photos and its vectors are staged in LMDB beside the
serving ones (resumable: a stopped run continues where it was). Then one LMDB
transaction replaces every face vector, the gallery's pack and its index generation
together, after the index of the new vectors has been written; until that commit the
gallery serves, and accepts faces of, the old pack only.

Faces keep their ids: each stored face is matched to the new detector's face that
overlaps it most. A face the new detector does not find again is removed at the swap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from index.rebuild import RebuildBusyError, write_generation
from index.records import FaceInfo, KeyRecord
from index.store import StagingIncompleteError
from index.vectors import VectorIndex
from models.analyzer import FaceAnalyzer
from models.faces import Face
from models.packs import load_pack

from .context import Services

MIN_OVERLAP = 0.5  # intersection over union for a new detection to be the same face


@dataclass
class ReembedSummary:
    images: int = 0  # re-embedded in this run
    faces: int = 0
    lost: int = 0  # stored faces the new pack's detector did not find again
    seconds: float = 0.0
    pack: str = ""


def overlap(a: list[float], b: list[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_faces(stored: list[FaceInfo], found: list[Face]) -> dict[int, np.ndarray]:
    """Stored face id to the embedding of the new face overlapping it most (each used once)."""
    pairs = sorted(
        ((overlap(face.bbox, new.box()), face.id, index) for face in stored for index, new in enumerate(found)),
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


def stage(
    services: Services, key: KeyRecord, analyzer: FaceAnalyzer, batch: int, summary: ReembedSummary, advance: Callable
) -> None:
    """Re-embed every image of the gallery not staged for the pack yet."""
    store, gid, pack = services.store, key.gallery, analyzer.pack_name
    done = store.staged_image_ids(gid, pack)
    todo = [image_id for image_id in store.image_ids(gid) if image_id not in done]
    for start in range(0, len(todo), batch):
        records = store.get_images(gid, todo[start : start + batch])
        records = [records[image_id] for image_id in todo[start : start + batch] if image_id in records]
        photos = [services.photos.read(record.file) for record in records]  # a missing photo stops the run
        for record, found in zip(records, analyzer.faces_in_many(photos), strict=True):
            if found is None:
                raise ValueError(f"the stored photo of image {record.id} ({record.file}) cannot be decoded")
            matched = match_faces(record.faces, found)
            store.stage_embeddings(gid, record.id, pack, matched)
            summary.images += 1
            summary.faces += len(matched)
            summary.lost += len(record.faces) - len(matched)
        advance(len(records))


def swap(services: Services, key: KeyRecord, pack: str, dim: int) -> bool:
    """Write the index of the staged vectors and swap them in; False when images were added
    meanwhile (stage them, then swap again)."""
    store, gid = services.store, key.gallery
    gallery, ids, vectors, missing = store.staged_snapshot(gid, pack)
    if missing:
        return False
    index = VectorIndex.build(dim, ids, vectors.reshape(len(ids), dim), services.settings.index)
    write_generation(services.indexes.files, gid, gallery, index)
    try:
        store.swap_embeddings(gid, pack, dim, gallery.seq, gallery.index_generation)
    except StagingIncompleteError:
        return False
    services.indexes.files.remove_older(gid, gallery.index_generation + 1)
    return True


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
    if services.store.gallery(key.gallery).pack in (None, analyzer.pack_name):
        return summary  # already in that pack, or empty: any pack may fill it
    with services.indexes.files.lock(key.gallery, wait=False) as held:
        if not held:
            raise RebuildBusyError(f"gallery {key.gallery} is being rebuilt or re-embedded by another process")
        while True:
            stage(services, key, analyzer, batch, summary, advance)
            if swap(services, key, analyzer.pack_name, analyzer.dim):
                break
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
