"""Re-embedding a gallery with another model pack, swapped in at once when complete.

The new pack runs over the stored photos and its vectors are staged in the catalog beside
the serving ones (resumable: a stopped run continues where it was). Then the vector
index swaps them in: it indexes the staged vectors and one catalog write replaces every
face vector, the gallery's pack and its index together; until that write the gallery
serves, and accepts faces of, the old pack only.

Faces keep their ids: each stored face is matched to the new detector's face that
overlaps it most. A face the new detector does not find again is removed at the swap.

The gallery's images are split into the batches of a bulk job of the catalog (as a bulk
import's photos are), so where the catalog's jobs are shared (cluster mode) several
machines can run the same re-embedding, each claiming batches with a lease. Then the
gallery's exclusive lock (which rebuilds take too): whoever holds it stages what is left
(images added meanwhile) and swaps. Where other workers may share the job they wait for
it, since one of them swapping holds it, and then find the gallery in the new pack and
stop; where none can, a holder is a rebuild or another run, and the gallery is busy.
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

from .bulk_import import LEASE_SECONDS, claimed_batches
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


def _unstaged(services: Services, key: KeyRecord, pack: str) -> list[int]:
    done = services.catalog.staging.staged_images(key.gallery, pack)
    return [image_id for image_id in services.catalog.images.ids(key.gallery) if image_id not in done]


def _stage_batch(
    services: Services, key: KeyRecord, analyzer: FaceAnalyzer, image_ids: list[int], summary: ReembedSummary
) -> int:
    """Re-embed these images (those still stored) and stage their vectors; how many there were."""
    gid, pack = key.gallery, analyzer.pack_name
    records = services.catalog.images.get_many(gid, image_ids)
    records = [records[image_id] for image_id in image_ids if image_id in records]
    for record, found in zip(records, analyzer.faces_in_many(_photos(services, records)), strict=True):
        if found is None:
            raise NotAPhoto(f"the stored photo of image {record.id} ({record.file}) cannot be decoded")
        matched = match_faces(record.faces, found)
        with writing():
            services.catalog.staging.stage(gid, record.id, pack, matched)
        summary.images += 1
        summary.faces += len(matched)
        summary.lost += len(record.faces) - len(matched)
    return len(records)


def stage(
    services: Services, key: KeyRecord, analyzer: FaceAnalyzer, batch: int, summary: ReembedSummary, advance: Callable
) -> None:
    """Re-embed every image of the gallery not staged for the pack yet."""
    todo = _unstaged(services, key, analyzer.pack_name)
    for start in range(0, len(todo), batch):
        advance(_stage_batch(services, key, analyzer, todo[start : start + batch], summary))


def stage_claimed(
    services: Services,
    key: KeyRecord,
    analyzer: FaceAnalyzer,
    batch: int,
    summary: ReembedSummary,
    advance: Callable,
    lease_seconds: float,
) -> None:
    """Stage the batches of the job this worker claims until every batch of it is done."""
    jobs, generation = services.catalog.jobs, services.catalog.images.gallery(key.gallery).index_generation
    job = f"reembed:{key.gallery}:{analyzer.pack_name}:{generation}"
    todo = _unstaged(services, key, analyzer.pack_name)
    with writing():
        jobs.plan(job, [todo[start : start + batch] for start in range(0, len(todo), batch)])
    for claimed in claimed_batches(jobs, job, lease_seconds):
        advance(_stage_batch(services, key, analyzer, claimed, summary))


def reembed(
    services: Services,
    key: KeyRecord,
    pack_name: str,
    batch: int = 16,
    advance: Callable[[int], object] = lambda n: None,
    lease_seconds: float = LEASE_SECONDS,
) -> ReembedSummary:
    """Re-embed the key's gallery with ``pack_name`` and swap the vectors in atomically."""
    started = time.monotonic()
    analyzer = FaceAnalyzer(load_pack(pack_name), services.settings.threads_per_model)
    summary = ReembedSummary(pack=analyzer.pack_name)
    if services.catalog.images.gallery(key.gallery).pack in (None, analyzer.pack_name):
        return summary  # already in that pack, or empty: any pack may fill it
    # the workers of the job stage side by side; the swap is one worker's, the others wait for it
    stage_claimed(services, key, analyzer, batch, summary, advance, lease_seconds)
    with services.indexes.exclusive(key.gallery, wait=services.catalog.jobs.shared) as held:
        if not held:
            raise GalleryBusy(f"gallery {key.gallery} is being rebuilt or re-embedded by another process")
        while services.catalog.images.gallery(key.gallery).pack != analyzer.pack_name:
            stage(services, key, analyzer, batch, summary, advance)
            with writing():
                if services.indexes.swap(key.gallery, analyzer.pack_name, analyzer.dim):
                    break
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
