"""The evaluation harness behind scripts/evaluate.py (its docstring says what it measures): data
sets in the shared layout, each photo embedded once by the service's own pipeline and cached,
detection, verification, identification through the real index (the use cases, or a running
server through face_search_client), the stranger-rate calibration, and the tables of the report.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from face_search_client import FaceSearchClient, FaceSearchError
from models.decode import decode_image
from models.detector import iou
from models.faces import Detection, Face
from models.packs import ModelPack, part_of
from service.api.errors import Code
from service.core.config import Settings
from service.core.errors import NotAPhoto
from service.core.requests import DeleteImages
from service.core.services import Services, build_services
from service.core.threshold import search_threshold
from service.harness import persons_evaluation
from service.harness.live import ROOT
from service.harness.photos import DATASETS
from service.harness.scoring import (
    SPLITS,
    ScoreCounts,
    assign_folds,
    enrolment_splits,
    open_set_missed,
    recall_at,
    stranger_rate,
    tar_at,
    tenfold_accuracy,
)

CALIBRATION_FARS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
GALLERY_SIZES = (1_000, 10_000, 100_000)
STRANGER_RATE = 0.01  # a stranger's query comes back empty 99% of the time
MIN_FACES = 1000  # small galleries keep the 1,000-face threshold (see service/core/threshold.py)
TOP_STRANGERS = 1000  # per query, the most similar other people's faces kept for the open-set model
EXIF_ORIENTATION = 0x0112
TAR_FARS = (1e-2, 1e-3, 1e-4)
# Named groups of a set's identities evaluated apart as well (service/harness/subsets.json: the East and
# Southeast Asian people of LFW), each with its own galleries and strangers.
SUBSETS: dict[str, Any] = json.loads((Path(__file__).resolve().parent / "subsets.json").read_text())
TIGHT = "lfw-tight"
TIGHT_SIDE = 160
TIGHT_SPAN = 2.0  # a tight crop's side, in eye-to-mouth distances: the forehead and the chin cut


@dataclass
class DataSet:
    name: str
    root: Path
    paths: list[str]
    identities: list[str | None]
    expected_faces: list[int | None]
    pairs: list[tuple[int, int, int, bool]] = field(default_factory=list)  # fold, a, b, same
    photos: list[bytes] | None = None  # a set made in memory (tight crops): never written anywhere

    @property
    def labelled(self) -> bool:
        return any(identity is not None for identity in self.identities)

    def photo(self, index: int) -> bytes:
        return self.photos[index] if self.photos is not None else (self.root / self.paths[index]).read_bytes()

    def size(self, index: int) -> tuple[int, int]:
        """(width, height) as displayed, read from the header only."""
        return photo_size(io.BytesIO(self.photo(index)) if self.photos is not None else self.root / self.paths[index])

    def digest(self) -> str:
        """What the photos are, for a set made in memory (its cache key); '' for files."""
        if self.photos is None:
            return ""
        return hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in self.photos)).hexdigest()[:16]

    def part(self, name: str, indices: list[int]) -> DataSet:
        """The photos ``indices`` as a set of their own (pairs kept where both photos are in it)."""
        where = {old: new for new, old in enumerate(indices)}
        return DataSet(
            name=name,
            root=self.root,
            paths=[self.paths[i] for i in indices],
            identities=[self.identities[i] for i in indices],
            expected_faces=[self.expected_faces[i] for i in indices],
            pairs=[(f, where[a], where[b], same) for f, a, b, same in self.pairs if a in where and b in where],
            photos=None if self.photos is None else [self.photos[i] for i in indices],
        )


def load_set(root: Path) -> DataSet:
    with open(root / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    paths = [row["path"] for row in rows]
    data = DataSet(
        name=root.name,
        root=root,
        paths=paths,
        identities=[row.get("identity") or None for row in rows],
        expected_faces=[int(row["expected_faces"]) if row.get("expected_faces") else None for row in rows],
    )
    position = {path: i for i, path in enumerate(paths)}
    for name in ("pairs_paths.csv", "pairs.csv"):
        if not (root / name).is_file():
            continue
        with open(root / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and {"path_a", "path_b", "same"} <= rows[0].keys():
            folds = [int(r["fold"]) for r in rows] if "fold" in rows[0] else list(assign_folds(len(rows)))
            data.pairs = [
                (fold, position[r["path_a"]], position[r["path_b"]], r["same"].strip() in ("1", "true", "True"))
                for fold, r in zip(folds, rows, strict=True)
            ]
            break
    return data


def pipeline_fingerprint(pack: ModelPack, max_pixels: int) -> str:
    """Changes whenever the code, weights or settings that turn bytes into faces change (not
    thread counts): the pack as in use, with any FACE_SEARCH_* detector or runtime overrides applied."""
    digest = hashlib.sha256()
    for source in sorted((ROOT / "models").glob("*.py")):  # every module that turns bytes into faces
        digest.update(source.read_bytes())
    in_use = [
        pack.detector.sha256,
        [model.sha256 for model in pack.embedders],
        [str(model.runtime) for model in (pack.detector, *pack.embedders)],  # bf16 moves every vector a little
        pack.detector_input_size,
        pack.detector_score_threshold,
        asdict(pack.tuning),
        max_pixels,
    ]
    digest.update(json.dumps(in_use, sort_keys=True).encode())
    return digest.hexdigest()[:16]


# -- embedding every photo once -------------------------------------------------------


def _faces_to_arrays(faces: list[list[Face]], dim: int) -> dict[str, np.ndarray]:
    flat = [f for photo in faces for f in photo]
    return {
        "counts": np.array([len(photo) for photo in faces], np.int64),
        "bbox": np.array([f.detection.bbox for f in flat], np.float32).reshape(-1, 4),
        "landmarks": np.array([f.detection.landmarks for f in flat], np.float32).reshape(-1, 5, 2),
        "score": np.array([f.detection.score for f in flat], np.float32),
        "embedding": np.array([f.embedding for f in flat], np.float32).reshape(-1, dim),
    }


def _faces_from_arrays(arrays: dict[str, np.ndarray]) -> list[list[Face]]:
    faces, start = [], 0
    for count in arrays["counts"]:
        faces.append(
            [
                Face(
                    Detection(arrays["bbox"][i], arrays["landmarks"][i], float(arrays["score"][i])),
                    arrays["embedding"][i],
                )
                for i in range(start, start + int(count))
            ]
        )
        start += int(count)
    return faces


def photo_size(path: Path | io.BytesIO) -> tuple[int, int]:
    """(width, height) as displayed, read from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        return (height, width) if image.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)


@dataclass
class Embedded:
    faces: list[list[Face]]
    ms_per_photo: float
    sizes: list[tuple[int, int]]

    def subject(self, index: int) -> Face | None:
        """The labelled person's face: the one nearest the photo's centre (LFW-style sets centre
        it; a larger face at the edge is a bystander), or None when no face was found."""
        faces = self.faces[index]
        if not faces:
            return None
        centre = np.array(self.sizes[index], np.float32) / 2
        return min(
            faces, key=lambda f: float(np.linalg.norm((f.detection.bbox[:2] + f.detection.bbox[2:]) / 2 - centre))
        )

    def found_subject(self, index: int) -> Face:
        """``subject`` of a photo known to hold a face."""
        subject = self.subject(index)
        assert subject is not None, f"photo {index} holds no face"
        return subject

    def subjects(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices of photos with a face, their subjects' embeddings)."""
        found = np.array([i for i, photo in enumerate(self.faces) if photo], np.int64)
        vectors = [self.found_subject(i).embedding for i in found]
        return found, np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)

    def part(self, indices: list[int]) -> Embedded:
        return Embedded([self.faces[i] for i in indices], self.ms_per_photo, [self.sizes[i] for i in indices])

    def embedder(self, dims: list[int], part: int) -> Embedded:
        """The same faces with one embedder's vectors, taken out of the fused ones."""
        faces = [[Face(f.detection, part_of(f.embedding, dims, part)) for f in photo] for photo in self.faces]
        return Embedded(faces, self.ms_per_photo, self.sizes)


def embed_set(services: Services, data: DataSet, cache_dir: Path) -> Embedded:
    """Every photo's faces through the service's pipeline, cached by the pipeline's fingerprint."""
    fingerprint = pipeline_fingerprint(services.pack, services.settings.limits.max_pixels) + data.digest()
    cache = cache_dir / f"{data.name}-{services.pack.name}-{fingerprint}.npz"
    sizes = [data.size(i) for i in range(len(data.paths))]
    if cache.is_file():
        with np.load(cache) as stored:
            return Embedded(_faces_from_arrays(dict(stored)), float(stored["ms_per_photo"]), sizes)
    faces, started = [], time.perf_counter()
    for i in range(len(data.paths)):
        try:
            faces.append(services.reader.faces_in(data.photo(i)))
        except NotAPhoto:
            faces.append([])
        if (i + 1) % 500 == 0:
            print(f"  {data.name}: {i + 1}/{len(data.paths)} photos embedded", file=sys.stderr)
    ms = (time.perf_counter() - started) * 1000 / max(len(data.paths), 1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {"ms_per_photo": ms, **_faces_to_arrays(faces, services.analyzer.dim)}
    np.savez(cache, **arrays)
    return Embedded(faces, ms, sizes)


# -- detection and verification (local embeddings) ------------------------------------


def detection_metrics(data: DataSet, faces: list[list[Face]]) -> dict:
    counts = np.array([len(photo) for photo in faces])
    result = {"photos": len(counts), "with_face": float(np.mean(counts > 0)), "faces_per_photo": float(np.mean(counts))}
    expected = [(n, e) for n, e in zip(counts, data.expected_faces, strict=True) if e is not None]
    if expected:
        result["expected_count_exact"] = float(np.mean([n == e for n, e in expected]))
        result["expected_faces_found"] = float(
            sum(min(n, e) for n, e in expected) / max(sum(e for _, e in expected), 1)
        )
        result["false_faces"] = int(sum(max(n - e, 0) for n, e in expected))
    return result


def pair_scores(data: DataSet, embedded: Embedded) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine of the subjects' faces per pair; a photo without a face scores -1 (a failure for same pairs)."""
    subjects = [embedded.subject(i) for i in range(len(data.paths))]

    def cosine(first: Face | None, second: Face | None) -> float:
        return float(first.embedding @ second.embedding) if first and second else -1.0

    scores = np.array([cosine(subjects[a], subjects[b]) for _, a, b, _ in data.pairs])
    same = np.array([s for *_, s in data.pairs], bool)
    folds = np.array([f for f, *_ in data.pairs])
    return scores, same, folds


@dataclass
class AllPairs:
    """Every same/different pair of subjects' faces in a set, and per query its closest strangers."""

    same: np.ndarray
    different: ScoreCounts
    top_strangers: np.ndarray  # (queries, TOP_STRANGERS) descending, -inf padded
    strangers: np.ndarray  # (queries,) how many other people's faces each query was compared with
    mates: np.ndarray  # each later photo of a person against that person's first: one enrolled photo each

    def missed(self, threshold: float) -> float:
        """The share of a person's later photos that would not reach their first photo."""
        return float(np.mean(self.mates < threshold)) if len(self.mates) else float("nan")

    def pair_rates(self, threshold: float) -> np.ndarray:
        """Per query, the share of other people's faces at or above ``threshold``."""
        floor = self.top_strangers[:, -1]
        if np.any((floor >= threshold) & np.isfinite(floor)):
            raise ValueError(f"threshold {threshold} is below the kept stranger scores; keep more")
        return (self.top_strangers >= threshold).sum(axis=1) / np.maximum(self.strangers, 1)


def all_pairs(data: DataSet, embedded: Embedded, people: set[str] | None = None, block: int = 1024) -> AllPairs:
    """Every pair among the photos of ``people`` (default: everyone) that have a face."""
    found, vectors = embedded.subjects()
    if people is not None:
        chosen = np.array([data.identities[i] in people for i in found], bool)
        found, vectors = found[chosen], vectors[chosen]
    labels = np.array([data.identities[i] for i in found])
    _, codes = np.unique(labels, return_inverse=True)
    different, same_scores = ScoreCounts(), []
    keep = min(TOP_STRANGERS, len(found))
    top = np.full((len(found), keep), -np.inf, np.float32)
    strangers = np.zeros(len(found), np.int64)
    for start in range(0, len(found), block):
        rows = slice(start, start + block)
        sims = vectors[rows] @ vectors.T
        same_mask = codes[rows, None] == codes[None, :]
        upper = np.arange(start, start + sims.shape[0])[:, None] < np.arange(len(found))[None, :]
        same_scores.append(sims[same_mask & upper])
        different.add(sims[~same_mask & upper])
        stranger_sims = np.where(same_mask, -np.inf, sims)
        strangers[rows] = (~same_mask).sum(axis=1)
        part = np.partition(stranger_sims, -keep, axis=1)[:, -keep:]
        top[rows] = -np.sort(-part, axis=1)
    first = {code: i for i, code in reversed(list(enumerate(codes)))}
    later = np.array([i for i, code in enumerate(codes) if first[code] != i], np.int64)
    mates = np.einsum("ij,ij->i", vectors[later], vectors[[first[codes[i]] for i in later]]) if len(later) else later
    same = np.concatenate(same_scores) if same_scores else np.zeros(0)
    return AllPairs(same, different, top, strangers, mates)


def verification_metrics(data: DataSet, embedded: Embedded, pairs: AllPairs) -> dict:
    result: dict = {
        "same_pairs": len(pairs.same),
        "different_pairs": pairs.different.total,
        "same_mean_cosine": float(np.mean(pairs.same)) if len(pairs.same) else float("nan"),
    }
    for far in TAR_FARS:
        threshold = pairs.different.threshold_at(far)
        result[f"tar_at_far_{far:g}"] = tar_at(pairs.same, threshold)
        result[f"cosine_at_far_{far:g}"] = threshold
    if data.pairs:
        scores, same, folds = pair_scores(data, embedded)
        accuracy = tenfold_accuracy(scores, same, folds)
        result.update(
            pairs=len(scores),
            pair_accuracy=accuracy.mean,
            pair_accuracy_std=accuracy.std,
            pair_threshold=float(np.mean(accuracy.thresholds)),
        )
    return result


# -- identification through the real index ---------------------------------------------


Hits = list[tuple[int, float, list[float]]]  # image id, score, box of the face that matched


class Backend:
    """Adds photos to one gallery and searches it: the service's use cases, or its HTTP API."""

    name = "local"

    def add(self, index: int) -> int | None: ...
    def search(self, index: int, top_k: int, threshold: float | None) -> Hits | None: ...
    def delete(self, image_ids: list[int]) -> None: ...
    def threshold(self) -> float | None:
        return None


class LocalBackend(Backend):
    """The use cases on the cached faces: the same index, store and threshold as POST /search."""

    def __init__(self, services: Services, data: DataSet, embedded: Embedded) -> None:
        self.services, self.data, self.embedded = services, data, embedded
        self.key = services.keys.create().record

    def add(self, index: int) -> int | None:
        faces = self.embedded.faces[index]
        if not faces:
            return None
        photo = self.data.photo(index)
        return self.services.gallery.store(self.key, photo, {"photo": index}, faces, self.services.pack).id

    def search(self, index: int, top_k: int, threshold: float | None) -> Hits | None:
        subject = self.embedded.subject(index)
        if subject is None:
            return None
        searcher = self.services.searcher
        limit = searcher.default_threshold(self.key.gallery) if threshold is None else threshold
        hits = searcher.best_per_image(self.key, subject.embedding, top_k, limit)
        return [(hit.image.id, hit.score, hit.bbox) for hit in hits]

    def delete(self, image_ids: list[int]) -> None:
        self.services.gallery.delete(self.key, DeleteImages(image_ids))

    def threshold(self) -> float | None:
        return self.services.searcher.default_threshold(self.key.gallery)


class HttpBackend(Backend):
    """POST /images and POST /search of a running server, through the service's own client."""

    name = "http"

    def __init__(self, url: str, key: str, secret: str, data: DataSet) -> None:
        self.client, self.data = FaceSearchClient(url, key, secret), data
        if self.client.list_images(limit=1).total:
            raise SystemExit("the key's gallery is not empty: use a key made for the evaluation")

    def add(self, index: int) -> int | None:
        try:
            return self.client.add_image(self.data.photo(index), {"photo": index}).id
        except FaceSearchError as refused:
            if refused.status_code != Code.NO_FACE:
                raise
            return None

    def search(self, index: int, top_k: int, threshold: float | None) -> Hits | None:
        try:
            hits = self.client.search(self.data.photo(index), top_k=top_k, threshold=threshold)
        except FaceSearchError as refused:
            if refused.status_code != Code.NO_FACE:
                raise
            return None
        return [(hit.id, hit.score, list(hit.bbox)) for hit in hits]

    def delete(self, image_ids: list[int]) -> None:
        for start in range(0, len(image_ids), 1000):
            self.client.delete_images(image_ids[start : start + 1000])


def identification_metrics(data: DataSet, embedded: Embedded, backend: Backend) -> dict:
    """Closed-set recall with one photo per person enrolled, then open-set with half of them.

    A photo is enrolled whole, as the service stores it, so a search can also match a
    bystander in it (LFW photos often show two people). Such a hit names nobody: it is
    counted apart and skipped, and the next answer decides.
    """
    identities = [identity or "" for identity in data.identities]  # "": the photos no label names
    people: dict[str, list[int]] = {}
    for i, identity in enumerate(identities):
        people.setdefault(identity, []).append(i)
    enrolled: dict[str, int] = {}  # identity -> image id
    owner: dict[int, tuple[str, np.ndarray]] = {}  # image id -> (identity, the subject's box)
    for identity in sorted(people):
        photo = people[identity][0]
        image_id = backend.add(photo)
        if image_id is not None:
            enrolled[identity] = image_id
            owner[image_id] = (identity, embedded.found_subject(photo).detection.bbox)
    bystander_hits = [0]

    def named(answer: Hits | None) -> list[str]:
        """The identities of the answers that matched an enrolled photo's subject."""
        names = []
        for image_id, _, bbox in answer or []:
            identity, subject_box = owner[image_id]
            if iou(subject_box, np.asarray(bbox, np.float32)[None])[0] > 0.5:
                names.append(identity)
            else:
                bystander_hits[0] += 1
        return names

    def rank(index: int, names: list[str]) -> int | None:
        return names.index(identities[index]) + 1 if identities[index] in names else None

    probes = [i for photos in people.values() for i in photos[1:]]
    ranks = [rank(i, named(backend.search(i, 5, -1.0))) for i in probes]
    result: dict[str, Any] = {
        "enrolled": len(enrolled),
        "probes": len(probes),
        "recall_at_1": recall_at(ranks, 1),
        "recall_at_5": recall_at(ranks, 5),
        "bystander_hits_in_top_5": bystander_hits[0],
    }
    # Open set: keep every other person who has more photos to search with.
    repeat = sorted(identity for identity, photos in people.items() if len(photos) > 1)
    kept = set(repeat[::2]) & enrolled.keys()
    backend.delete([image_id for identity, image_id in enrolled.items() if identity not in kept])
    threshold = backend.threshold()
    misses, wrong, false_hits, strangers, bystander_hits[0] = 0, 0, 0, 0, 0
    for identity, photos in people.items():
        for i in photos if identity not in kept else photos[1:]:
            names = named(backend.search(i, 5, None))
            if identity in kept:
                misses += not names or names[0] != identity
                wrong += bool(names) and names[0] != identity
            else:
                strangers += 1
                false_hits += bool(names)
    mates = sum(len(people[identity]) - 1 for identity in kept)
    backend.delete([enrolled[identity] for identity in kept])
    result.update(
        open_set_enrolled=len(kept),
        open_set_threshold=threshold,
        open_set_fpir=false_hits / strangers if strangers else float("nan"),
        open_set_miss=misses / mates if mates else float("nan"),
        open_set_wrong_person=wrong / mates if mates else float("nan"),
        open_set_bystander_hits=bystander_hits[0],
        open_set_stranger_probes=strangers,
        open_set_mate_probes=mates,
    )
    return result


# -- calibration ------------------------------------------------------------------------


def threshold_for(pairs: AllPairs, faces: int, rate: float = STRANGER_RATE) -> float:
    """The lowest cosine at which stranger queries against ``faces`` faces get an answer at most ``rate`` of the time.

    Solved on the per-query model (``stranger_rate``) rather than on the pooled per-pair
    FAR: a handful of mislabelled or duplicated photos (LFW has some) put dozens of
    "different-person" pairs above 0.6, which would drag a pooled 1e-6 quantile far up,
    while in the per-query model they only cost their own small share of queries.
    """
    floor = pairs.top_strangers[:, -1]
    low, high = float(np.max(floor[np.isfinite(floor)], initial=-1.0)) + 1e-4, 1.0
    while high - low > 1e-4:
        middle = (low + high) / 2
        low, high = (low, middle) if stranger_rate(pairs.pair_rates(middle), faces) <= rate else (middle, high)
    return round(high, 4)


def far_table(pairs: AllPairs) -> list[dict]:
    """Per-pair FAR target (stranger rate / faces) -> cosine, measured where the set is large enough.

    A query is compared with every other person's photo in the set, so galleries up to that
    many faces are measured; one decade beyond, the cosine is extrapolated linearly in
    log(FAR) from the two rows before (and flagged).
    """
    rows: list[dict] = []
    measurable = float(np.median(pairs.strangers))
    for far in CALIBRATION_FARS:
        faces = round(STRANGER_RATE / far)
        if faces <= 1.5 * measurable:
            rows.append({"far": far, "faces": faces, "cosine": threshold_for(pairs, faces), "extrapolated": False})
        elif len(rows) >= 2 and not rows[-1]["extrapolated"]:
            (f0, c0), (f1, c1) = ((r["far"], r["cosine"]) for r in rows[-2:])
            slope = (c1 - c0) / (math.log10(f1) - math.log10(f0))
            cosine = round(c1 + slope * (math.log10(far) - math.log10(f1)), 4)
            rows.append({"far": far, "faces": faces, "cosine": cosine, "extrapolated": True})
    return rows


def _scaled(pack: ModelPack, rows: list[dict]) -> ModelPack:
    table = [[row["far"], row["cosine"]] for row in rows]
    policy = {"stranger_rate": STRANGER_RATE, "min_faces": MIN_FACES, "far_cosine": table}
    return replace(pack, manifest={**pack.manifest, "calibration": policy})


def calibration(pack: ModelPack, data: DataSet, embedded: Embedded, pairs: AllPairs) -> dict:
    """The pack's threshold table, and what a stranger sees in galleries of 1k to 100k faces.

    The gallery rates are measured on the people the table came from, and on people it
    never saw: the table fitted on one half of the people (alternate names) and applied
    to the other half, both ways round, which shows how far the calibration carries.
    """
    rows = far_table(pairs)
    for row in rows:
        row["tar"] = tar_at(pairs.same, row["cosine"])
        row["missed"] = pairs.missed(row["cosine"])
        row["pooled_cosine"] = (
            pairs.different.threshold_at(row["far"]) if row["far"] * pairs.different.total >= 3 else None
        )
    people = sorted({i for i in data.identities if i is not None})
    halves = [all_pairs(data, embedded, set(people[::2])), all_pairs(data, embedded, set(people[1::2]))]
    crossed = [(_scaled(pack, far_table(fit)), test) for fit, test in (halves, halves[::-1])]
    scaled_pack = _scaled(pack, rows)
    fixed = search_threshold(scaled_pack, 10_000)
    galleries = []
    for faces in GALLERY_SIZES:
        scaled = search_threshold(scaled_pack, faces)
        held = [search_threshold(fitted, faces) for fitted, _ in crossed]
        galleries.append(
            {
                "faces": faces,
                "fixed_threshold": fixed,
                "fixed_stranger_rate": stranger_rate(pairs.pair_rates(fixed), faces),
                "fixed_miss": pairs.missed(fixed),
                "scaled_threshold": scaled,
                "scaled_stranger_rate": stranger_rate(pairs.pair_rates(scaled), faces),
                "scaled_miss": pairs.missed(scaled),
                "held_out_thresholds": held,
                "held_out_stranger_rates": [
                    stranger_rate(test.pair_rates(t), faces) for t, (_, test) in zip(held, crossed, strict=True)
                ],
                "held_out_misses": [test.missed(t) for t, (_, test) in zip(held, crossed, strict=True)],
            }
        )
    return {
        "different_pairs": pairs.different.total,
        "same_pairs": len(pairs.same),
        "strangers_per_query": float(np.median(pairs.strangers)),
        "table": rows,
        "galleries": galleries,
        "manifest": scaled_pack.manifest["calibration"],
        "fixed_threshold_10k": fixed,
    }


def joint_calibration(pack: ModelPack, whole: tuple[AllPairs, dict], groups: dict[str, tuple[AllPairs, dict]]) -> dict:
    """One threshold table for everyone and for each group (the East Asian people of LFW among
    themselves, tight crops of LFW photos): at each gallery size the highest of their cosines, so
    that a stranger of any of them comes back empty 99% of the time.

    A group smaller than the whole set measures its own cosine only for galleries up to about its
    size (``far_table``); for larger galleries its cosine is the whole set's plus the gap between
    the two measured at the largest gallery the group measures directly (its median strangers per
    query).
    """
    whole_pairs, whole_rows = whole
    gaps = {}
    for name, (group, _) in groups.items():
        largest = int(np.median(group.strangers))
        gaps[name] = {"gap": round(threshold_for(group, largest) - threshold_for(whole_pairs, largest), 4),
                      "faces": largest}  # fmt: skip
    rows = []
    for row in whole_rows["table"]:
        joint = {"far": row["far"], "faces": row["faces"], "whole": row["cosine"], "extrapolated": row["extrapolated"]}
        for name, (_, calibrated) in groups.items():
            measured = {r["far"]: r["cosine"] for r in calibrated["table"] if not r["extrapolated"]}
            own = measured.get(row["far"], round(row["cosine"] + gaps[name]["gap"], 4))
            joint[name] = {"cosine": own, "measured": row["far"] in measured}
        joint["cosine"] = max([row["cosine"]] + [joint[name]["cosine"] for name in groups])
        rows.append(joint)
    scaled = _scaled(pack, rows)
    galleries = []
    for faces in GALLERY_SIZES:
        threshold = search_threshold(scaled, faces)
        every = {"whole": whole_pairs} | {name: group for name, (group, _) in groups.items()}
        galleries.append(
            {
                "faces": faces,
                "threshold": threshold,
                "stranger_rate": {n: stranger_rate(p.pair_rates(threshold), faces) for n, p in every.items()},
                "miss": {n: p.missed(threshold) for n, p in every.items()},
            }
        )
    return {"gaps": gaps, "table": rows, "galleries": galleries, "manifest": scaled.manifest["calibration"]}


# -- output -----------------------------------------------------------------------------


def plot(path: Path, title: str, pairs: AllPairs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (roc, histogram) = plt.subplots(1, 2, figsize=(11, 4.2))
    thresholds = np.linspace(-0.2, 1.0, 1201)
    far = np.array([pairs.different.share_at_or_above(t) for t in thresholds])
    tar = np.array([tar_at(pairs.same, t) for t in thresholds])
    visible = far > 0
    roc.semilogx(far[visible], tar[visible])
    roc.set(xlabel="false accept rate (different-person pairs)", ylabel="true accept rate", title=f"{title}: ROC")
    roc.set_xlim(max(far[visible].min(), 1e-7), 1)
    roc.grid(True, which="both", alpha=0.3)
    edges = np.linspace(-0.3, 1.0, 131)
    different = pairs.different.histogram(edges)
    width = edges[1] - edges[0]
    histogram.bar(
        edges[:-1],
        different / max(different.sum(), 1) / width,
        width,
        alpha=0.5,
        color="tab:red",
        label="different people",
    )
    histogram.hist(pairs.same, bins=edges, density=True, alpha=0.5, color="tab:blue", label="same person")
    histogram.set(xlabel="cosine similarity", ylabel="density", title=f"{title}: similarity")
    histogram.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def _pct2(value: float) -> str:
    return f"{100 * value:.2f}%"


def markdown(reports: list[dict]) -> str:
    lines = [
        "| set | pack | via | photos | people | faces found | faces/photo | pair accuracy (10-fold) "
        "| TAR@FAR1e-2 | TAR@FAR1e-3 | recall@1 | recall@5 | open-set threshold | FPIR | miss | ms/photo |",
        "| --- | --- | --- |" + " ---: |" * 13,
    ]
    for r in reports:
        d, v, i = r["detection"], r.get("verification", {}), r.get("identification", {})
        accuracy = (
            f"{100 * v['pair_accuracy']:.2f}% ± {100 * v['pair_accuracy_std']:.2f} ({v['pairs']})"
            if "pairs" in v
            else "-"
        )
        if "expected_count_exact" in d:
            accuracy = f"right face count {_pct(d['expected_count_exact'])}, {d['false_faces']} extra faces"
        threshold = i.get("open_set_threshold")
        lines.append(
            f"| {r['set']} | {r['pack']} | {r['via']} | {d['photos']} | {r.get('people', '-')} "
            f"| {_pct(d['with_face'])} "
            f"| {d.get('faces_per_photo', float('nan')):.2f} | {accuracy} | {_pct(v.get('tar_at_far_0.01'))} "
            f"| {_pct(v.get('tar_at_far_0.001'))} | {_pct(i.get('recall_at_1'))} | {_pct(i.get('recall_at_5'))} "
            f"| {'-' if threshold is None else f'{threshold:.3f}'} | {_pct(i.get('open_set_fpir'))} "
            f"| {_pct(i.get('open_set_miss'))} | {r.get('ms_per_photo', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def _detected(d: dict) -> str:
    """Photos with a face; against the manifest's counts where it has them (groups, negatives)."""
    found = round(d["photos"] * d["faces_per_photo"])
    if "expected_faces_found" not in d:
        return _pct(d["with_face"])
    if d["expected_faces_found"] == 0 and d["false_faces"] == found:  # nothing expected: every face is false
        return f"{found} faces"
    return f"{_pct(d['expected_faces_found'])} of expected faces, {d['false_faces']} extra"


def side_by_side(reports: list[dict], costs: dict[str, dict] | None = None) -> str:
    """Every pack next to every other on each set: the figures to choose a pack by."""
    lines = [
        "| set | pack | faces found | recall@1 | TAR@FAR1e-3 | default threshold | FPIR | miss | ms/photo "
        "| ms per 250x250 photo | models' memory (peak) | bytes/face index / LMDB |",
        "| --- | --- |" + " ---: |" * 10,
    ]
    for r in sorted(reports, key=lambda r: r["set"]):
        v, i = r.get("verification", {}), r.get("identification", {})
        cost = (costs or {}).get(r["pack"])
        extra = (
            f"| {cost['ms_per_250px_photo']:.1f} | {cost['memory']['peak_mb']:.0f} MB "
            f"| {cost['storage']['index']:.0f} / {cost['storage']['lmdb_faces_table']:.0f} |"
            if cost
            else "| - | - | - |"
        )
        threshold = i.get("open_set_threshold")
        lines.append(
            f"| {r['set']} | {r['pack']} | {_detected(r['detection'])} | {_pct(i.get('recall_at_1'))} "
            f"| {_pct(v.get('tar_at_far_0.001'))} | {'-' if threshold is None else f'{threshold:.3f}'} "
            f"| {_pct(i.get('open_set_fpir'))} | {_pct(i.get('open_set_miss'))} "
            f"| {r.get('ms_per_photo', float('nan')):.0f} " + extra
        )
    return "\n".join(lines)


def models_markdown(reports: list[dict], reference: str, costs: dict[str, dict] | None = None) -> str:
    """The models alone, every pack and embedder on every set: open-set misses over the same random
    enrolment splits (and in how many of them each does better and worse than ``reference``), TAR."""
    lines = [
        f"| set | pack or embedder | faces found | miss @1% strangers answered ({SPLITS} splits: mean, min-max) "
        f"| splits better / worse than {reference} | TAR@FAR1e-3 | TAR@FAR1e-4 | ms per face |",
        "| --- | --- |" + " ---: |" * 6,
    ]
    by_set: dict[str, dict[str, dict]] = {}
    for r in reports:
        if "models_alone" in r:
            by_set.setdefault(r["set"], {})[r["pack"]] = r
    for name in sorted(by_set):
        base = by_set[name].get(reference, {}).get("models_alone")
        for label, r in by_set[name].items():
            alone, v = r["models_alone"], r["verification"]
            misses = np.array(alone["open_set_misses"])
            versus = "-"
            if base is not None and label != reference:
                other = np.array(base["open_set_misses"])
                versus = f"{int((misses < other).sum())} / {int((misses > other).sum())}"
            cost = (costs or {}).get(label.split(":")[0])
            per_face = "-"
            if cost:
                embedders = cost.get("ms_per_face", {})
                per_face = f"{embedders[label.split(':')[1]]:.1f}" if ":" in label else f"{sum(embedders.values()):.1f}"
            if "missed_by_every_embedder" in alone:
                versus += f"; every embedder misses {_pct2(alone['missed_by_every_embedder'])}"
            lines.append(
                f"| {name} | {label} | {_detected(r['detection'])} "
                f"| {_pct2(misses.mean())} ({_pct2(misses.min())}-{_pct2(misses.max())}) | {versus} "
                f"| {_pct2(v['tar_at_far_0.001'])} | {_pct2(v['tar_at_far_0.0001'])} | {per_face} |"
            )
    return "\n".join(lines)


def joint_markdown(name: str, result: dict) -> str:
    whole, *groups = name.split("+")
    gaps = "; ".join(f"{g}: {result['gaps'][g]['gap']:+.4f} at {result['gaps'][g]['faces']} faces" for g in groups)
    lines = [
        f"Joint calibration of {name}: at each gallery size the highest cosine; a group's own cosine beyond "
        f"what it measures is {whole}'s plus the gap measured at the largest gallery it measures ({gaps}).",
        "",
        f"| per-pair FAR target | gallery faces | {whole} | " + " | ".join(groups) + " | default |",
        "| ---: | ---: | ---: |" + " ---: |" * (len(groups) + 1),
    ]
    for r in result["table"]:
        own = [f"{r[g]['cosine']:.4f}{'' if r[g]['measured'] else ' (+ gap)'}" for g in groups]
        whole_cell = f"{r['whole']:.4f}{' (extrapolated)' if r['extrapolated'] else ''}"
        lines.append(f"| {r['far']:g} | {r['faces']:,} | {whole_cell} | " + " | ".join(own) + f" | {r['cosine']:.4f} |")
    names = ["whole", *groups]
    lines += [
        "",
        "| gallery faces | default threshold | strangers answered: "
        + " / ".join([whole, *groups])
        + " | true matches missed: "
        + " / ".join([whole, *groups])
        + " |",
        "| ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {g['faces']:,} | {g['threshold']:.4f} | "
        + " / ".join(_pct2(g["stranger_rate"][n]) for n in names)
        + " | "
        + " / ".join(_pct2(g["miss"][n]) for n in names)
        + " |"
        for g in result["galleries"]
    ]
    return "\n".join(lines)


def calibration_markdown(name: str, result: dict) -> str:
    if "+" in name.split("/")[0]:
        return joint_markdown(name.split("/")[0], result)
    lines = [
        f"Calibration on {name}: {result['different_pairs']:,} different-person pairs, "
        f"{result['same_pairs']:,} same-person pairs; each query compared with "
        f"{result['strangers_per_query']:,.0f} other people's photos.",
        "",
        "| per-pair FAR target | gallery faces | cosine | TAR (all pairs) | missed (one photo enrolled) "
        "| pooled per-pair cosine |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['far']:g} | {r['faces']:,} | {r['cosine']:.3f}{' (extrapolated)' if r['extrapolated'] else ''} "
        f"| {_pct2(r['tar'])} | {_pct2(r['missed'])} "
        f"| {'-' if r['pooled_cosine'] is None else format(r['pooled_cosine'], '.3f')} |"
        for r in result["table"]
    ]
    lines += [
        "",
        "| gallery faces | fixed threshold | strangers answered | true matches missed "
        "| scaled threshold | strangers answered | true matches missed "
        "| held-out halves: threshold | strangers answered | missed |",
        "| ---: |" + " ---: |" * 9,
    ]
    lines += [
        f"| {g['faces']:,} | {g['fixed_threshold']:.3f} | {_pct2(g['fixed_stranger_rate'])} | {_pct2(g['fixed_miss'])} "
        f"| {g['scaled_threshold']:.3f} | {_pct2(g['scaled_stranger_rate'])} | {_pct2(g['scaled_miss'])} "
        f"| {' / '.join(f'{t:.3f}' for t in g['held_out_thresholds'])} "
        f"| {' / '.join(_pct2(r) for r in g['held_out_stranger_rates'])} "
        f"| {' / '.join(_pct2(m) for m in g['held_out_misses'])} |"
        for g in result["galleries"]
    ]
    return "\n".join(lines)


# -- driver -----------------------------------------------------------------------------


def models_alone(data: DataSet, embedded: Embedded) -> dict:
    """Open-set identification by the models alone, over random enrolment splits: the share of the
    enrolled people's other photos not answered with them first when 1% of strangers are answered."""
    indices, subjects = embedded.subjects()
    found = np.zeros(len(embedded.faces), bool)
    found[indices] = True
    vectors = np.zeros((len(found), subjects.shape[1] if len(indices) else 1), np.float32)
    vectors[indices] = subjects
    labels = [identity or f"unlabelled-{i}" for i, identity in enumerate(data.identities)]
    missed = [open_set_missed(vectors, found, labels, split)[0] for split in enrolment_splits(labels)]
    misses = [float(m.mean()) if len(m) else float("nan") for m in missed]
    return {"open_set_misses": misses, "open_set_miss": float(np.mean(misses)), "splits": len(misses), "missed": missed}


def measured(data: DataSet, embedded: Embedded, label: str, args: argparse.Namespace) -> tuple[dict, AllPairs | None]:
    """Detection, verification and the models' open-set figures of one set (or part) for one embedding."""
    report: dict = {"set": data.name, "pack": label, "via": "local", "ms_per_photo": embedded.ms_per_photo}
    people = {identity for identity in data.identities if identity is not None}
    if people:
        report["people"] = len(people)
    report["detection"] = detection_metrics(data, embedded.faces)
    if not data.labelled:
        return report, None
    pairs = all_pairs(data, embedded)
    report["verification"] = verification_metrics(data, embedded, pairs)
    report["models_alone"] = models_alone(data, embedded)
    plot(Path(args.out) / f"{data.name}-{label.replace(':', '-')}.png", f"{data.name} / {label}", pairs)
    return report, pairs


def evaluate_embedded(
    data: DataSet, embedded: Embedded, services: Services, args: argparse.Namespace, calibrate: bool
) -> tuple[list[dict], dict | None, AllPairs | None]:
    """Every figure of one set (or subset) for the running pack, and of each of its embedders alone
    with ``--parts``; identification through the service for the pack itself."""
    pack = services.pack
    report, pairs = measured(data, embedded, pack.name, args)
    calibrated = None
    if pairs is not None:
        if calibrate:
            calibrated = calibration(pack, data, embedded, pairs)
        backend = (
            HttpBackend(args.url, args.key, args.secret, data) if args.url else LocalBackend(services, data, embedded)
        )
        report["via"] = backend.name
        report["identification"] = identification_metrics(data, embedded, backend)
        if args.persons:
            report["persons"] = persons_metrics(services, data, embedded)
    reports = [report]
    if args.parts and len(pack.embedders) > 1:
        dims = services.analyzer.embedder.dims
        for part, model in enumerate(pack.embedders):
            alone = embedded.embedder(dims, part)
            reports.append(measured(data, alone, f"{pack.name}:{model.path.stem}", args)[0])
        if "models_alone" in report:  # the misses no embedder avoids: what no fusion of them can recover
            every = [
                np.logical_and.reduce(m) for m in zip(*(r["models_alone"]["missed"] for r in reports), strict=True)
            ]
            report["models_alone"]["missed_by_every_embedder"] = float(np.mean([m.mean() for m in every]))
    for r in reports:
        r.get("models_alone", {}).pop("missed", None)  # the masks, not for the report
    return reports, calibrated, pairs


def evaluate_set(
    data: DataSet, pack_name: str, args: argparse.Namespace
) -> tuple[list[dict], dict[str, dict], dict[str, AllPairs], Embedded]:
    """The reports of the set, of its subsets (``SUBSETS``) and, with ``--parts``, of each embedder
    alone; the calibrations asked for and their pairs (by set name); and the set's embedded faces."""
    reports: list[dict] = []
    calibrations: dict[str, dict] = {}
    pairs: dict[str, AllPairs] = {}
    with tempfile.TemporaryDirectory(prefix="evaluate-") as scratch:
        settings = replace(Settings.from_env().at(Path(scratch)), models=pack_name, threshold=None)
        # persons are made by the evaluation itself (the adds' own attach would move faces between them)
        settings = replace(settings, grouping=replace(settings.grouping, attach=False))
        with build_services(settings) as services:
            embedded = embed_set(services, data, Path(args.out) / "cache")
            people = len(set(data.identities) - {None})
            # a set too small to compare each query with a thousand strangers cannot calibrate
            large = args.calibrate and data.labelled and len(data.paths) - len(data.paths) / max(people, 1) >= MIN_FACES
            made, whole, whole_pairs = evaluate_embedded(data, embedded, services, args, large)
            reports += made
            if whole is not None and whole_pairs is not None:
                calibrations[data.name], pairs[data.name] = whole, whole_pairs
            for name, group in SUBSETS.get(data.name, {}).items():
                indices = [i for i, identity in enumerate(data.identities) if identity in set(group["people"])]
                subset = data.part(f"{data.name}:{name}", indices)
                subset.identities = [group["same_person"].get(who, who) for who in subset.identities]
                made, part, part_pairs = evaluate_embedded(subset, embedded.part(indices), services, args, large)
                reports += made
                if part is not None and part_pairs is not None:
                    calibrations[subset.name], pairs[subset.name] = part, part_pairs
    return reports, calibrations, pairs, embedded


def tight_set(data: DataSet, embedded: Embedded, people: int, seed: int = 3) -> DataSet:
    """Tight crops of some of ``data``'s photos, made in memory and never written: for ``people``
    people with two photos or more (up to four photos each) and half as many with one, a square of
    ``TIGHT_SPAN`` eye-to-mouth distances centred on the subject's five landmarks, which cuts the
    forehead and the chin as an ID card's crop often does, at ``TIGHT_SIDE`` pixels, JPEG-encoded."""
    subjects = {i: face for i in range(len(data.paths)) if (face := embedded.subject(i)) is not None}
    chosen = sample(data.identities, people, seed, lambda i: i in subjects)
    tight = data.part(TIGHT, chosen)
    tight.photos = [tight_crop(data.photo(i), subjects[i].detection.landmarks) for i in chosen]
    return tight


def sample(
    identities: list[str | None], people: int, seed: int = 3, usable: Callable[[int], bool] = lambda i: True
) -> list[int]:
    """Photos of ``people`` people with two ``usable`` photos or more (up to four each) and of half as
    many with one, in the set's order of people."""
    photos: dict[str, list[int]] = {}
    for i, identity in enumerate(identities):
        if identity is not None and usable(i):
            photos.setdefault(identity, []).append(i)
    rng = random.Random(seed)
    repeat = rng.sample(sorted(p for p, found in photos.items() if len(found) > 1), people)
    single = rng.sample(sorted(p for p, found in photos.items() if len(found) == 1), people // 2)
    return [i for person in sorted(repeat + single) for i in photos[person][:4]]


def tight_crop(photo: bytes, landmarks: np.ndarray, span: float = TIGHT_SPAN, side: int = TIGHT_SIDE) -> bytes:
    """An upright square of ``span`` eye-to-mouth distances centred on five landmarks, at ``side`` pixels."""
    image = decode_image(photo)
    eyes, mouth = landmarks[:2].mean(axis=0), landmarks[3:].mean(axis=0)
    size = span * float(np.linalg.norm(mouth - eyes))
    left, top = landmarks.mean(axis=0) - size / 2
    scale = side / size
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], np.float32)
    crop = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def persons_metrics(services: Services, data: DataSet, embedded: Embedded) -> dict:
    """Grouping against the Immich baseline, and search by person (sets with people of 3 photos)."""
    result = {"grouping": persons_evaluation.grouping_metrics(services, data, embedded)}
    counts: dict[str, int] = {}
    for identity in data.identities:
        counts[identity or ""] = counts.get(identity or "", 0) + 1
    if sum(count >= 3 for name, count in counts.items() if name) >= 20:
        result["search"] = persons_evaluation.search_metrics(services, data, embedded)
    return result


def default_sets() -> list[Path]:
    return sorted(p for p in DATASETS.iterdir() if (p / "manifest.csv").is_file())
