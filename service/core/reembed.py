"""Re-embedding a gallery with another model pack, swapped in at once when complete.

The new pack runs over the stored photos and its vectors are staged in the catalog beside
the serving ones (resumable: a stopped run continues where it was). Then the vector
index swaps them in: it indexes the staged vectors and one catalog write replaces every
face vector, the gallery's pack and its index together; until that write the gallery
serves, and accepts faces of, the old pack only.

Faces keep their ids: each stored face is matched to the new detector's face that
overlaps it most. A face the new detector does not find again is removed at the swap.

Between a pack and one it serves (buffalo_s_edgeface serves buffalo_s: the same detector,
and buffalo_s's embedder is its first), a move costs less (``Plan``): towards the larger
pack only the embedders the gallery lacks run, beside the detector that finds the stored
faces' landmarks again, and the stored vectors make the rest of each new one; towards the
smaller pack its part of each stored vector is taken, with no photo read and no model run.

In cluster mode several machines can run the same re-embedding: the gallery's images are
split into batches that each worker claims with a lease in the catalog (as a bulk import
does), and whichever worker finds the last batch done swaps, under the gallery's
exclusive lock; the others then find the gallery in the new pack and stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from index.records import FaceInfo, ImageRecord, KeyRecord
from models.analyzer import FaceAnalyzer
from models.detector import iou
from models.faces import Face
from models.packs import ModelPack, ModelPackError, completed, load_pack, part_of

from .bulk_import import LEASE_SECONDS, claimed_batches
from .errors import GalleryBusy, NotAPhoto, PhotoMissing, writing
from .images import stored
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


@dataclass
class Plan:
    """How a gallery's faces get the target pack's vectors.

    ``analyzer`` runs over the stored photos: the target pack's models, or only those of its
    embedders the gallery lacks when the gallery's pack is one the target serves (``known``:
    which of the target's embedders the stored vectors are). ``project``: the gallery's pack
    serves the target, whose vectors are its part ``project`` of the stored ones (widths
    ``dims``); no model runs.
    """

    target: ModelPack
    dim: int
    analyzer: FaceAnalyzer | None = None
    known: int | None = None
    project: int | None = None
    dims: tuple[int, ...] = ()

    @classmethod
    def of(cls, target: ModelPack, gallery_pack: str, threads: int) -> Plan:
        dims = tuple(int(model.dim or 0) for model in target.embedders)
        served = target.parts_for(gallery_pack)
        if served is not None:
            rest = tuple(i for i in range(len(dims)) if i not in served)
            return cls(target, sum(dims), FaceAnalyzer(target.restricted(rest), threads), known=served[0], dims=dims)
        try:
            source = load_pack(gallery_pack, check=False)
        except ModelPackError:  # a pack this installation does not know: only its photos can be used
            source = None
        part = source.parts_for(target.name) if source is not None else None
        if source is not None and part is not None:
            return cls(
                target, int(target.dim or 0), project=part[0], dims=tuple(int(m.dim or 0) for m in source.embedders)
            )
        analyzer = FaceAnalyzer(target, threads)
        return cls(target, analyzer.dim, analyzer)

    def vectors(self, services: Services, gid: int, records: list[ImageRecord]) -> list[dict[int, np.ndarray]]:
        """Per image, its faces' new vectors by face id (a face not found again is absent)."""
        if self.analyzer is None:
            held = services.catalog.images.vectors(gid, [face.id for record in records for face in record.faces])
            return [
                {face.id: part_of(held[face.id], list(self.dims), self.project) for face in r.faces if face.id in held}
                for r in records
            ]
        result = []
        for record, found in zip(records, self.analyzer.faces_in_many(_photos(services, records)), strict=True):
            if found is None:
                raise NotAPhoto(f"the stored photo of image {record.id} ({record.file}) cannot be decoded")
            matched = match_faces(record.faces, found)
            if self.known is not None and matched:
                held = services.catalog.images.vectors(gid, list(matched))
                matched = {
                    face_id: completed(vector, list(self.dims), held[face_id], self.known)
                    for face_id, vector in matched.items()
                    if face_id in held
                }
            result.append(matched)
        return result


def _stage_batch(services: Services, key: KeyRecord, plan: Plan, image_ids: list[int], summary: ReembedSummary) -> int:
    """Re-embed these images (those still stored) and stage their vectors; how many there were."""
    gid, pack = key.gallery, plan.target
    records = services.catalog.images.get_many(gid, image_ids)
    records = [records[image_id] for image_id in image_ids if image_id in records]
    for record, matched in zip(records, plan.vectors(services, gid, records), strict=True):
        with writing():
            services.catalog.staging.stage(gid, record.id, pack.name, {f: stored(v, pack) for f, v in matched.items()})
        summary.images += 1
        summary.faces += len(matched)
        summary.lost += len(record.faces) - len(matched)
    return len(records)


def stage(
    services: Services, key: KeyRecord, plan: Plan, batch: int, summary: ReembedSummary, advance: Callable
) -> None:
    """Re-embed every image of the gallery not staged for the pack yet."""
    todo = _unstaged(services, key, plan.target.name)
    for start in range(0, len(todo), batch):
        advance(_stage_batch(services, key, plan, todo[start : start + batch], summary))


def stage_claimed(
    services: Services,
    key: KeyRecord,
    plan: Plan,
    batch: int,
    summary: ReembedSummary,
    advance: Callable,
    lease_seconds: float,
) -> None:
    """Cluster mode: stage the batches this worker claims until every batch of the job is done."""
    jobs, generation = services.catalog.jobs, services.catalog.images.gallery(key.gallery).index_generation
    job = f"reembed:{key.gallery}:{plan.target.name}:{generation}"
    todo = _unstaged(services, key, plan.target.name)
    with writing():
        jobs.plan(job, [todo[start : start + batch] for start in range(0, len(todo), batch)])
    for claimed in claimed_batches(jobs, job, lease_seconds):
        advance(_stage_batch(services, key, plan, claimed, summary))


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
    target = load_pack(pack_name)
    summary = ReembedSummary(pack=target.name)
    gallery_pack = services.catalog.images.gallery(key.gallery).pack
    if gallery_pack in (None, target.name):
        return summary  # already in that pack, or empty: any pack may fill it
    plan = Plan.of(target, gallery_pack, services.settings.threads_per_model)
    cluster = services.settings.storage.cluster
    if cluster:  # several workers stage side by side; the swap is one worker's, the others wait for it
        stage_claimed(services, key, plan, batch, summary, advance, lease_seconds)
    with services.indexes.exclusive(key.gallery, wait=cluster) as held:
        if not held:
            raise GalleryBusy(f"gallery {key.gallery} is being rebuilt or re-embedded by another process")
        while services.catalog.images.gallery(key.gallery).pack != target.name:
            stage(services, key, plan, batch, summary, advance)
            with writing():
                if services.indexes.swap(key.gallery, target.name, plan.dim):
                    break
    summary.seconds = round(time.monotonic() - started, 1)
    return summary
