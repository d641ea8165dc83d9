"""Grouping faces into persons over a gallery: a run (the background job) and the attach an
add makes on its own, both by the rules of ``service.core.grouping``.

A run reads every face's image, size and score and every assignment, asks the gallery's
vector index for the nearest faces of the faces it looks at (``VectorIndexes.neighbours``,
a batch at a time: never all pairs), plans, and commits the plan a batch of operations at a
time; the catalog applies each operation only as far as it still holds, so a user's edit
made meanwhile always wins, and a run killed at any point leaves whole commits behind.

A first run (or a full one) looks at every face. Later runs look at the faces added since
the last one and, one step out, at the faces those are near: that is where anything can have
changed.

An add looks up the nearest faces of each new face before it stores the photo, and names in
the add's own write the person a face clearly belongs to: one the face is near several faces
of (``support``, or all of a smaller person), and more of its near faces than are anywhere
else. Anything less clear waits for the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from index.catalog import Catalog, PersonTable
from index.records import EVERY_PERSON, Applied, Fold, GroupOp
from index.vectors import VectorIndexes

from .errors import writing
from .grouping import FaceSet, GroupingSettings, Links, plan
from .keys import now

log = logging.getLogger(__name__)

READ_BATCH = 1000  # image records read at a time
QUERY_BATCH = 256  # faces whose neighbours are asked at once

Progress = Callable[[int, int], object]  # (done, total) of a run's steps: faces queried, then faces placed


@dataclass
class RunSummary:
    faces: int = 0  # the gallery's faces
    queried: int = 0  # faces whose neighbours were looked at
    links: int = 0
    applied: Applied | None = None
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # seconds of each step: read, neighbours, plan, commit


class GroupingRun:
    """One run over one gallery."""

    def __init__(self, catalog: Catalog, indexes: VectorIndexes, threshold: float, settings: GroupingSettings) -> None:
        self.catalog, self.indexes, self.threshold, self.settings = catalog, indexes, threshold, settings

    def run(self, gid: int, full: bool = False, progress: Progress = lambda done, total: None) -> RunSummary:
        started = time.monotonic()
        state = self.catalog.grouping.state(gid)
        faces = self._faces(gid)
        summary = RunSummary(faces=len(faces.ids))
        summary.steps["read"] = round(time.monotonic() - started, 1)
        if not len(faces.ids):
            self.catalog.grouping.finish(gid, 0, state.pending)
            return summary
        first = full or state.watermark == 0
        seeds = ~faces.held & ((faces.ids > state.watermark) if not first else True)
        if not first:
            seeds &= faces.person == 0
        links, queried = self._links(gid, faces, np.nonzero(seeds)[0], expand=not first, progress=progress)
        summary.queried, summary.links = queried, len(links.first)
        summary.steps["neighbours"] = round(time.monotonic() - started - sum(summary.steps.values()), 1)
        ops = plan(faces, links, self.settings)
        summary.steps["plan"] = round(time.monotonic() - started - sum(summary.steps.values()), 1)
        summary.applied = self._commit(gid, ops, queried, progress)
        summary.steps["commit"] = round(time.monotonic() - started - sum(summary.steps.values()), 1)
        with writing():
            self.catalog.grouping.finish(gid, int(faces.ids[-1]), state.pending)
        summary.seconds = round(time.monotonic() - started, 1)
        log.info(
            "gallery %d: grouped %d faces (%d looked at, %d links): %d new persons, %d faces placed, %d persons "
            "folded, %d skipped, in %.1f s (%s)", gid, summary.faces, queried, summary.links,
            len(summary.applied.created), summary.applied.attached, summary.applied.folded, summary.applied.skipped,
            summary.seconds, summary.steps,
        )  # fmt: skip
        return summary

    def _faces(self, gid: int) -> FaceSet:
        """Every face of the gallery, its image, whether it may seed, and where it stands."""
        ids, images, sizes, scores = [], [], [], []
        image_ids = self.catalog.images.ids(gid)
        for start in range(0, len(image_ids), READ_BATCH):
            for record in self.catalog.images.get_many(gid, image_ids[start : start + READ_BATCH]).values():
                for face in record.faces:
                    x1, y1, x2, y2 = face.bbox
                    ids.append(face.id)
                    images.append(record.id)
                    sizes.append(min(x2 - x1, y2 - y1))
                    scores.append(face.score)
        order = np.argsort(np.array(ids, np.int64), kind="stable")
        face_ids = np.array(ids, np.int64)[order]
        good = (np.array(sizes)[order] >= self.settings.min_face_size) & (
            np.array(scores)[order] >= self.settings.min_det_score
        )
        faces = FaceSet(
            ids=face_ids,
            images=np.array(images, np.int64)[order],
            good=good if len(face_ids) else np.zeros(0, bool),
            person=np.zeros(len(face_ids), np.int64),
            kept_out=np.zeros(len(face_ids), np.int64),
            held=np.zeros(len(face_ids), bool),
        )
        assignments = self.catalog.grouping.assignments(gid)
        placed = faces.index_of(np.array(list(assignments), np.int64))
        for index, assignment in zip(placed.tolist(), assignments.values(), strict=True):
            if index < 0:
                continue  # added after the faces were read
            faces.person[index] = assignment.person or 0
            faces.held[index] = assignment.kept_out == EVERY_PERSON and assignment.person is None
            faces.kept_out[index] = assignment.kept_out or 0
        persons = sorted({int(person) for person in np.unique(faces.person) if person})
        for start in range(0, len(persons), READ_BATCH):
            found = self.catalog.persons.get_many(gid, persons[start : start + READ_BATCH])
            faces.edited.update({person_id: person.edited for person_id, person in found.items()})
        return faces

    def _links(
        self, gid: int, faces: FaceSet, seeds: np.ndarray, expand: bool, progress: Progress
    ) -> tuple[Links, int]:
        """The links of the seeds and, with ``expand``, of the faces they link to."""
        parts: list[Links] = []
        queried = np.zeros(len(faces.ids), bool)
        todo, total, done = seeds, len(seeds), 0
        while len(todo):
            for start in range(0, len(todo), QUERY_BATCH):
                batch = todo[start : start + QUERY_BATCH]
                vectors = self.catalog.images.vectors(gid, faces.ids[batch].tolist())
                batch = np.array([index for index in batch.tolist() if int(faces.ids[index]) in vectors], np.int64)
                if len(batch):
                    queries = np.stack([vectors[int(faces.ids[index])] for index in batch.tolist()])
                    cosines, neighbours = self.indexes.neighbours(gid, queries, self.settings.neighbours + 1)
                    parts.append(Links.between(faces, batch, neighbours, cosines, self.threshold))
                queried[todo[start : start + QUERY_BATCH]] = True
                done += len(todo[start : start + QUERY_BATCH])
                progress(done, total)
            if not expand:
                break
            expand = False
            reached = np.concatenate([np.concatenate([p.first, p.second]) for p in parts]) if parts else seeds[:0]
            reached = np.unique(reached)
            todo = reached[~queried[reached] & ~faces.held[reached]]
            total += len(todo)
        return Links.joined(parts), int(queried.sum())

    def _commit(self, gid: int, ops: list[GroupOp], queried: int, progress: Progress) -> Applied:
        """The plan, a batch of operations (about ``settings.commit_faces`` faces) per transaction."""
        applied = Applied()
        done, total = queried, queried + sum(_weight(op) for op in ops)
        batches: list[list[GroupOp]] = []
        weight = most = self.settings.commit_faces
        for op in ops:
            if weight + _weight(op) > most:
                batches.append([])
                weight = 0
            batches[-1].append(op)
            weight += _weight(op)
        for batch in batches:
            with writing():
                applied.add(self.catalog.grouping.commit(gid, batch, self.settings.min_faces, now()))
            done += sum(_weight(op) for op in batch)
            progress(done, total)
        return applied


def _weight(op: GroupOp) -> int:
    return len(op.persons) if isinstance(op, Fold) else len(op.faces)


class Attacher:
    """At add time: the person each new face clearly belongs to, if any."""

    def __init__(
        self, persons: PersonTable, indexes: VectorIndexes, threshold: float, settings: GroupingSettings
    ) -> None:
        self.persons, self.indexes = persons, indexes
        self.threshold, self.settings = threshold, settings

    def persons_of(self, gid: int, embeddings: list[np.ndarray]) -> list[int | None]:
        """One person id (or None) per face; no two faces of the photo get the same one."""
        chosen: list[int | None] = [None] * len(embeddings)
        if not self.settings.attach or not embeddings or not self.persons.page(gid, 0, 0)[1]:
            return chosen
        cosines, ids = self.indexes.neighbours(gid, np.stack(embeddings), self.settings.neighbours)
        near = [[int(i) for i, c in zip(row, scores, strict=True) if i >= 0 and c >= self.threshold]
                for row, scores in zip(ids, cosines, strict=True)]  # fmt: skip
        assignments = self.persons.of_faces(gid, sorted({face for faces in near for face in faces}))
        counted = sorted({a.person for a in assignments.values() if a.person is not None})
        sizes = {pid: person.faces for pid, person in self.persons.get_many(gid, counted).items()}
        claims: dict[int, tuple[int, int]] = {}  # person -> (votes, face index) of the face that claims it best
        for index, faces in enumerate(near):
            tally: dict[int, int] = {}
            for face in faces:
                found = assignments.get(face)
                if found is not None and found.person in sizes:
                    tally[found.person] = tally.get(found.person, 0) + 1
            if not tally:
                continue
            person, count = max(sorted(tally.items()), key=lambda item: item[1])
            if count < min(self.settings.support, sizes[person]) or 2 * count <= len(faces):
                continue  # too few of the person's faces, or most of its near faces are elsewhere
            if person not in claims or claims[person][0] < count:
                claims[person] = (count, index)
        for person, (_, index) in claims.items():
            chosen[index] = person
        return chosen
