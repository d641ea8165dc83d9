"""A gallery moved from buffalo_s to yunet_sface and back: nothing lost that a client sees.

Real photos of the shared sets, through today's use cases (service.images, service.search,
service.reembed): one LFW photo per person enrolled plus group photos full of faces, the
person's other photos searched. After each move the image ids, metadata and stored photos
are those of before, faces keep their ids, recall@1 holds, and while a move is staged the
gallery answers from the old pack.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import replace

import pytest

from index.records import KeyRecord
from models.analyzer import FaceAnalyzer
from models.packs import load_pack
from service.core.config import Settings
from service.core.reembed import ReembedSummary
from service.core.services import Services, build_services
from service.harness.photos import DATASETS
from tests.usecases import add, find, page

PEOPLE = 30
GROUPS = ("dlib_bald_guys.jpg", "insightface_t1.jpg", "faceapi_bbt1.jpg", "dlib_2008_002079.jpg")
RECALL_FLOOR = 0.95  # both packs' recall@1 on LFW: docs/benchmarks/2026-12-01-evaluation.md
LOST_FLOOR = 0.03  # share of stored faces a move may lose (docs/models.md, switching packs)


def _lfw_people() -> dict[str, list[bytes]]:
    folder = DATASETS / "lfw"
    if not (folder / "manifest.csv").is_file():
        pytest.skip("the shared LFW set is not on this machine")
    people: dict[str, list[str]] = defaultdict(list)
    with open(folder / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            people[row["identity"]].append(row["path"])
    chosen = random.Random(15).sample(sorted(who for who, paths in people.items() if len(paths) >= 3), PEOPLE)
    return {who: [(folder / path).read_bytes() for path in sorted(people[who])[:3]] for who in chosen}


def _recall(services: Services, key: KeyRecord, people: dict[str, list[bytes]]) -> float:
    probes = [(who, photo) for who, photos in people.items() for photo in photos[1:]]
    right = 0
    for who, photo in probes:
        hits = find(services, key, photo, top_k=1, threshold=-1.0)
        right += bool(hits) and hits[0].image.metadata.get("who") == who
    return right / len(probes)


def _gallery_view(services: Services, key: KeyRecord) -> dict[int, tuple[dict, list[int], bytes]]:
    """What a client sees of each image: metadata, face ids and the stored photo."""
    records, _ = page(services, key, 0, 1000)
    return {
        r.id: (r.metadata, [face.id for face in r.faces], services.gallery.photo(key.gallery, r.id)[0]) for r in records
    }


def _moved(settings: Settings, key: KeyRecord, old: str, new: str) -> ReembedSummary:
    with build_services(replace(settings, models=old), serving=True) as services:
        return services.reembedding.run(key, new)


@pytest.mark.slow
def test_round_trip_buffalo_s_to_yunet_sface_and_back(settings: Settings) -> None:
    people = _lfw_people()
    groups = DATASETS / "groups" / "images"
    with build_services(settings, serving=True) as services:
        key = services.keys.create("mover", "secret").record
        for who, photos in people.items():
            add(services, key, photos[0], {"who": who})
        for name in GROUPS:
            add(services, key, (groups / name).read_bytes(), {"group": name})
        before = _gallery_view(services, key)
        stored_faces = services.catalog.images.gallery(key.gallery).faces
        recalls = [_recall(services, key, people)]

        staged = ReembedSummary()
        services.reembedding.stage(key, FaceAnalyzer(load_pack("yunet_sface")), 8, staged, lambda n: None)
        assert services.catalog.images.gallery(key.gallery).pack == "buffalo_s", (
            "staged aside: the old pack still serves"
        )
        assert _recall(services, key, people) == recalls[0]

    there = _moved(settings, key, "buffalo_s", "yunet_sface")  # resumes from the staged vectors
    with build_services(replace(settings, models="yunet_sface"), serving=True) as services:
        gallery = services.catalog.images.gallery(key.gallery)
        assert (gallery.pack, gallery.dim) == ("yunet_sface", 128)
        recalls.append(_recall(services, key, people))
        after_there = _gallery_view(services, key)

    back = _moved(settings, key, "yunet_sface", "buffalo_s")
    with build_services(settings, serving=True) as services:
        gallery = services.catalog.images.gallery(key.gallery)
        assert (gallery.pack, gallery.dim) == ("buffalo_s", 512)
        recalls.append(_recall(services, key, people))
        after_back = _gallery_view(services, key)

    print(f"recall@1 buffalo_s {recalls[0]:.3f} -> yunet_sface {recalls[1]:.3f} -> buffalo_s {recalls[2]:.3f}; "
          f"faces {stored_faces}, lost {there.lost} then {back.lost}")  # fmt: skip
    assert min(recalls) >= RECALL_FLOOR, recalls
    assert there.lost + back.lost <= LOST_FLOOR * stored_faces, (there.lost, back.lost, stored_faces)
    for view in (after_there, after_back):
        assert view.keys() == before.keys(), "every image id stays"
        for image_id, (metadata, face_ids, photo) in view.items():
            assert metadata == before[image_id][0] and photo == before[image_id][2]
            assert set(face_ids) <= set(before[image_id][1]), "faces keep their ids; only lost ones go"
