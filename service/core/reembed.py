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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from index.catalog import Catalog, ImageTable
from index.records import FaceInfo, ImageRecord, KeyRecord
from index.vectors import VectorIndexes
from models.analyzer import FaceAnalyzer
from models.detector import iou
from models.faces import Face
from models.packs import ModelPack, ModelPackError, completed, load_pack, part_of

from .bulk_import import LEASE_SECONDS, claimed_batches
from .errors import GalleryBusy, NotAPhoto, PhotoMissing, writing
from .images import stored
from .photos import PhotoStore

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
            source: ModelPack | None = load_pack(gallery_pack, check=False)
        except ModelPackError:  # a pack this installation does not know: only its photos can be used
            source = None
        part = source.parts_for(target.name) if source is not None else None
        if source is not None and part is not None:
            widths = tuple(int(model.dim or 0) for model in source.embedders)
            return cls(target, int(target.dim or 0), project=part[0], dims=widths)
        analyzer = FaceAnalyzer(target, threads)
        return cls(target, analyzer.dim, analyzer)

    def vectors(
        self,
        images: ImageTable,
        photos: Callable[[list[ImageRecord]], list[bytes]],
        gid: int,
        records: list[ImageRecord],
    ) -> list[dict[int, np.ndarray]]:
        """Per image, its faces' new vectors by face id (a face not found again is absent)."""
        if self.analyzer is None:
            held = images.vectors(gid, [face.id for record in records for face in record.faces])
            return [
                {
                    face.id: part_of(held[face.id], list(self.dims), self.project or 0)
                    for face in r.faces
                    if face.id in held
                }
                for r in records
            ]
        result = []
        for record, found in zip(records, self.analyzer.faces_in_many(photos(records)), strict=True):
            if found is None:
                raise NotAPhoto(f"the stored photo of image {record.id} ({record.file}) cannot be decoded")
            matched = match_faces(record.faces, found)
            if self.known is not None and matched:
                held = images.vectors(gid, list(matched))
                matched = {
                    face_id: completed(vector, list(self.dims), held[face_id], self.known)
                    for face_id, vector in matched.items()
                    if face_id in held
                }
            result.append(matched)
        return result


class Reembedding:
    """A key's gallery re-embedded with another pack, swapped in at once."""

    def __init__(self, catalog: Catalog, indexes: VectorIndexes, photos: PhotoStore, threads: int) -> None:
        """``threads``: of each model run of the new pack."""
        self.catalog, self.indexes, self.photos, self.threads = catalog, indexes, photos, threads

    def _photos(self, records: list[ImageRecord]) -> list[bytes]:
        """The stored photos of ``records``; a missing one stops the run (nothing is swapped)."""
        try:
            return [self.photos.read(record.file) for record in records]
        except FileNotFoundError as exc:
            raise PhotoMissing(f"a stored photo is missing ({exc.filename}); nothing was swapped") from exc

    def _unstaged(self, key: KeyRecord, pack: str) -> list[int]:
        done = self.catalog.staging.staged_images(key.gallery, pack)
        return [image_id for image_id in self.catalog.images.ids(key.gallery) if image_id not in done]

    def _stage_batch(self, key: KeyRecord, plan: Plan, image_ids: list[int], summary: ReembedSummary) -> int:
        """Re-embed these images (those still stored) and stage their vectors; how many there were."""
        gid, pack = key.gallery, plan.target
        found = self.catalog.images.get_many(gid, image_ids)
        records = [found[image_id] for image_id in image_ids if image_id in found]
        for record, matched in zip(records, plan.vectors(self.catalog.images, self._photos, gid, records), strict=True):
            with writing():
                self.catalog.staging.stage(gid, record.id, pack.name, {f: stored(v, pack) for f, v in matched.items()})
            summary.images += 1
            summary.faces += len(matched)
            summary.lost += len(record.faces) - len(matched)
        return len(records)

    def stage(
        self,
        key: KeyRecord,
        plan: Plan,
        batch: int,
        summary: ReembedSummary,
        advance: Callable[[int], object],
        lease_seconds: float | None = None,
    ) -> None:
        """Re-embed the images of the gallery not staged for the pack yet: all of them, or with a
        ``lease_seconds``, the batches of the job this worker claims until every batch of it is
        done (by whichever worker)."""
        todo = self._unstaged(key, plan.target.name)
        batches = [todo[start : start + batch] for start in range(0, len(todo), batch)]
        if lease_seconds is None:
            claimed: Iterable[list[Any]] = batches
        else:
            jobs, generation = self.catalog.jobs, self.catalog.images.gallery(key.gallery).index_generation
            job = f"reembed:{key.gallery}:{plan.target.name}:{generation}"
            with writing():
                jobs.plan(job, batches)
            claimed = claimed_batches(jobs, job, lease_seconds)
        for image_ids in claimed:
            advance(self._stage_batch(key, plan, image_ids, summary))

    def plan(self, gallery: int, pack_name: str) -> Plan | None:
        """How the gallery would move to ``pack_name``; None when it is in that pack or empty."""
        target = load_pack(pack_name)
        current = self.catalog.images.gallery(gallery).pack
        return None if current in (None, target.name) else Plan.of(target, current, self.threads)

    def run(
        self,
        key: KeyRecord,
        pack_name: str,
        batch: int = 16,
        advance: Callable[[int], object] = lambda n: None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> ReembedSummary:
        """Re-embed the key's gallery with ``pack_name`` and swap the vectors in atomically."""
        started = time.monotonic()
        plan = self.plan(key.gallery, pack_name)
        if plan is None:  # already in that pack, or empty: any pack may fill it
            return ReembedSummary(pack=load_pack(pack_name, check=False).name)
        summary = ReembedSummary(pack=plan.target.name)
        # the workers of the job stage side by side; the swap is one worker's, the others wait for it
        self.stage(key, plan, batch, summary, advance, lease_seconds)
        with self.indexes.exclusive(key.gallery, wait=self.catalog.jobs.shared) as held:
            if not held:
                raise GalleryBusy(f"gallery {key.gallery} is being rebuilt or re-embedded by another process")
            while self.catalog.images.gallery(key.gallery).pack != plan.target.name:
                self.stage(key, plan, batch, summary, advance)
                with writing():
                    if self.indexes.swap(key.gallery, plan.target.name, plan.dim):
                        break
        summary.seconds = round(time.monotonic() - started, 1)
        return summary
