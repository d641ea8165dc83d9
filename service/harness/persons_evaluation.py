"""How well persons work on a labelled set, through the service's own use cases
(``scripts/evaluate.py --persons``):

- grouping: every photo stored with every face it holds, then one grouping run (the job's own
  code, on the gallery's real vector index); BCubed precision, recall and F over the labelled
  faces (each photo's subject), and the persons that mix identities; beside it, Immich's
  default rules (``scoring.immich_groups``) on the same embeddings;
- search by person: of the identities with at least 3 photos, every other one enrolled as a
  person of its first photo, or of its first two; each enrolled person's other photos are
  probes, every photo of the other people a stranger; the miss rate (no answer, or the wrong
  person first) at the threshold that answers 1% of strangers, one enrolled photo against
  two, and what the default threshold does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.core.persons import person_score
from service.core.search import nearest_groups
from service.core.services import Services
from service.harness.scoring import bcubed, immich_groups

STRANGERS_ANSWERED = 0.01
SEARCHED = 100  # nearest faces a probe looks at (the search grows this when it finds too few persons)


def _stored(services: Services, data: Any, embedded: Any) -> tuple[Any, list[list[int]]]:
    """A new key holding every photo with a face (all its faces, grouped by nobody yet): the key,
    and each photo's face ids (in the order ``embedded`` holds them; none for a photo not stored)."""
    key = services.keys.create().record
    faces: list[list[int]] = []
    for index, found in enumerate(embedded.faces):
        if not found:
            faces.append([])
            continue
        photo = (data.root / data.paths[index]).read_bytes()
        image = services.gallery.store(key, photo, {"photo": index}, found, services.pack)
        faces.append([face.id for face in image.faces])
    return key, faces


def _subject_index(embedded: Any, index: int) -> int:
    subject = embedded.found_subject(index)
    return next(n for n, face in enumerate(embedded.faces[index]) if face is subject)


def grouping_metrics(services: Services, data: Any, embedded: Any) -> dict:
    key, faces = _stored(services, data, embedded)
    summary = services.group_run().run(key.gallery, full=True)
    assignments = services.catalog.grouping.assignments(key.gallery)
    labels, ours, vectors = [], [], []
    for index, ids in enumerate(faces):
        subject = _subject_index(embedded, index) if ids else -1
        for n, face_id in enumerate(ids):
            labels.append(data.identities[index] if n == subject else None)
            found = assignments.get(face_id)
            ours.append(found.person if found is not None and found.person is not None else -1)
            vectors.append(embedded.faces[index][n].embedding)
    labelled = np.array(labels, object)
    baseline = immich_groups(np.stack(vectors).astype(np.float32))
    result: dict[str, Any] = {"faces": len(labels), "labelled": sum(label is not None for label in labels)}
    result["ours"] = bcubed(labelled, np.array(ours, np.int64)).__dict__
    result["immich"] = bcubed(labelled, baseline).__dict__
    result["link_threshold"] = services.link_threshold
    result["run_seconds"] = summary.seconds
    return result


def search_metrics(services: Services, data: Any, embedded: Any) -> dict:
    photos: dict[str, list[int]] = {}
    for index, identity in enumerate(data.identities):
        if identity is not None and embedded.faces[index]:
            photos.setdefault(identity, []).append(index)
    repeat = sorted(identity for identity, found in photos.items() if len(found) >= 3)
    enrolled = repeat[::2]
    strangers = [index for identity, found in photos.items() if identity not in enrolled for index in found]
    probes = [(identity, index) for identity in enrolled for index in photos[identity][2:]]
    result: dict[str, Any] = {"enrolled": len(enrolled), "mate_probes": len(probes), "stranger_probes": len(strangers)}
    for count in (1, 2):
        result[f"photos_{count}"] = _search_with(services, data, embedded, photos, enrolled, probes, strangers, count)
    return result


def _search_with(
    services: Services,
    data: Any,
    embedded: Any,
    photos: dict[str, list[int]],
    enrolled: list[str],
    probes: list[tuple[str, int]],
    strangers: list[int],
    count: int,
) -> dict:
    """Each enrolled identity a person of its first ``count`` photos; the probes' best persons."""
    key = services.keys.create().record
    gid, person_of = key.gallery, {}
    for identity in enrolled:
        face_ids = []
        for index in photos[identity][:count]:
            photo = (data.root / data.paths[index]).read_bytes()
            image = services.gallery.store(key, photo, {}, embedded.faces[index], services.pack)
            face_ids.append(image.faces[_subject_index(embedded, index)].id)
        person = services.catalog.person_edits.create(gid, identity, {}, face_ids, "evaluation")
        person_of[person.id] = identity

    def persons_of(face_ids: list[int]) -> dict[int, int]:
        found = services.catalog.persons.of_faces(gid, face_ids)
        return {face: a.person for face, a in found.items() if a.person is not None}

    def best(index: int) -> tuple[str | None, float, float]:
        """The nearest person's identity, its score, and the score of a mean of its two best faces."""
        query = embedded.found_subject(index).embedding
        found = nearest_groups(services.indexes, gid, query, 1, -1.0, persons_of)
        ranked = sorted(((person_score(hits), hits, person) for person, hits in found), key=lambda r: -r[0])
        if not ranked:
            return None, -1.0, -1.0
        score, hits, person = ranked[0]
        return person_of[person], score, float(np.mean([s for s, _ in hits[:2]]))

    mates = [(identity, *best(index)) for identity, index in probes]
    others = [best(index) for index in strangers]
    default = services.person_searcher.default_threshold(gid)
    result: dict[str, Any] = {"faces_in_persons": sum(p.faces for p in services.catalog.persons.page(gid, 0, 10**6)[0])}
    for name, column in (("best_face", 2), ("two_best_faces", 3)):
        stranger_scores = np.array([row[column - 1] for row in others])
        threshold = float(np.quantile(stranger_scores, 1 - STRANGERS_ANSWERED)) if len(others) else math.nan
        result[name] = {
            "threshold_at_1pct_strangers": round(threshold, 4),
            "miss_at_1pct_strangers": _miss(mates, column, threshold),
        }
    result["default_threshold"] = default
    result["strangers_answered_at_default"] = float(np.mean([row[1] >= default for row in others])) if others else None
    result["miss_at_default"] = _miss(mates, 2, default)
    return result


def _miss(mates: list[tuple], column: int, threshold: float) -> float:
    """The share of probes not answered with their own person first at ``threshold``."""
    return float(np.mean([row[1] != row[0] or row[column] < threshold for row in mates])) if mates else math.nan


def markdown(results: dict[str, dict]) -> str:
    lines = [
        "| set | faces | rules | BCubed precision | recall | F | persons | mixing identities | grouped |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        grouping = result["grouping"]
        for rules in ("ours", "immich"):
            r = grouping[rules]
            lines.append(
                f"| {name} | {grouping['faces']} | {rules} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f']:.4f} "
                f"| {r['persons']} | {r['mixed']} | {100 * r['grouped']:.1f}% |"
            )
    searched = {name: result["search"] for name, result in results.items() if "search" in result}
    if searched:
        lines += [
            "",
            "| set | enrolled | mate / stranger probes | photos a person | score | threshold at 1% strangers "
            "| miss at 1% strangers | default threshold | strangers answered | miss |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, search in searched.items():
            for count in (1, 2):
                r = search[f"photos_{count}"]
                for score in ("best_face", "two_best_faces"):
                    lines.append(
                        f"| {name} | {search['enrolled']} | {search['mate_probes']} / {search['stranger_probes']} "
                        f"| {count} | {score} | {r[score]['threshold_at_1pct_strangers']:.3f} "
                        f"| {100 * r[score]['miss_at_1pct_strangers']:.2f}% | {r['default_threshold']:.3f} "
                        f"| {100 * r['strangers_answered_at_default']:.2f}% | {100 * r['miss_at_default']:.2f}% |"
                    )
    return "\n".join(lines)
