"""Detection and recognition across face sizes, measured through the service on real photos.

For every labelled set of the shared data (../shared/datasets): the share of photos in
which a face is found, and recall@1 through the service's own use cases (one photo per
identity enrolled, every other photo searched with its largest face). Then the faces
found in groups/ against its manifest, the faces reported on negatives/ (should be 0),
what the large-photo pass recovers of faces pasted small into 4000x3000 photos, and
what the detector's passes cost: each photo is timed with the default detector and with
one plain pass at the pack's input side (no other pass), grouped by the passes it
needed (its first input larger or smaller than the pack's, close-up, confirmation).

    .venv/bin/python scripts/detection_report.py                  # everything, ~10 min
    .venv/bin/python scripts/detection_report.py --lfw-limit 1500 # LFW seeded subset
    .venv/bin/python scripts/detection_report.py --pack buffalo_s,yunet_sface  # packs side by side

Prints tables and writes reports/detection.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from index.records import KeyRecord
from models.analyzer import FaceAnalyzer
from models.detector import CONFIRM_VIEWS, iou
from models.faces import Face
from service.core.config import Settings
from service.core.errors import NotAPhoto
from service.core.services import Services, build_services
from service.harness.photos import DATASETS

LABELLED = ("lfw", "att-orl", "yale", "faceapi-bbt", "dlib-johns", "deepface-unit", "fr-examples")
COST_SAMPLE = 40  # photos per set timed (LFW: five times as many)
TINY_SIDES = (48, 64, 80, 96, 128)  # face heights, pixels
PASTED = 6  # LFW faces pasted at each height
LARGE_SIDES = (0, 896, 1024, 1600, 2048)


def manifest(name: str) -> list[dict[str, str]]:
    with open(DATASETS / name / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def photo(name: str, row: dict[str, str]) -> bytes:
    return (DATASETS / name / row["path"]).read_bytes()


def faces_of(services: Services, data: bytes) -> list:
    try:
        return services.reader.faces_in(data)
    except NotAPhoto:
        return []


def labelled_face(name: str, data: bytes, faces: list[Face]) -> Face:
    """The face a set's label names: in LFW the one nearest the centre (its definition), else the largest."""
    if name != "lfw":
        return faces[0]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "a photo the pipeline decoded"
    height, width = image.shape
    centre = np.array([width, height], np.float32) / 2
    return min(faces, key=lambda f: float(np.linalg.norm((f.detection.bbox[:2] + f.detection.bbox[2:]) / 2 - centre)))


def top_identity(services: Services, key: KeyRecord, face: Face, threshold: float | None) -> str | None:
    hits = services.searcher.search_faces(key, [face], 1, threshold)[0].matches
    return hits[0].image.metadata["identity"] if hits else None


def labelled(services: Services, name: str, rows: list[dict[str, str]]) -> dict:
    """Detection rate, then recall@1 with the first photo (with a face) of each identity enrolled.

    Two galleries: the photos as the API stores them (every face) searched with the
    largest face, as a client does by default; and the labelled face alone searched with
    the probe's labelled face, as a client picking from ``face: "all"`` does. They differ
    where a person appears in the background of someone else's enrolled photo: the first
    answers that photo, rightly, but its label names someone else.
    """
    whole = services.keys.create(f"report-{name}", "secret").record
    only = services.keys.create(f"report-{name}-labelled", "secret").record
    enrolled: set[str] = set()
    probes: list[tuple[str, list[Face], Face | None]] = []
    found = 0
    for row in rows:
        data, identity = photo(name, row), row["identity"]
        faces = faces_of(services, data)
        found += bool(faces)
        chosen = labelled_face(name, data, faces) if faces else None
        if chosen is not None and identity not in enrolled:
            services.gallery.store(whole, data, {"identity": identity}, faces, services.pack)
            services.gallery.store(only, data, {"identity": identity}, [chosen], services.pack)
            enrolled.add(identity)
        else:
            probes.append((identity, faces, chosen))
    searched = [(who, faces, chosen) for who, faces, chosen in probes if chosen is not None]
    correct = sum(top_identity(services, only, chosen, -1.0) == who for who, _, chosen in searched)
    photo_correct = sum(top_identity(services, whole, faces[0], -1.0) == who for who, faces, _ in searched)
    at_threshold = sum(top_identity(services, only, chosen, None) == who for who, _, chosen in searched)
    return {
        "photos": len(rows),
        "found": found,
        "detection_rate": found / len(rows),
        "enrolled": len(enrolled),
        "probes": len(probes),
        "recall_at_1": correct / max(1, len(probes)),
        "recall_at_1_whole_photos": photo_correct / max(1, len(probes)),
        "recall_at_1_default_threshold": at_threshold / max(1, len(probes)),
    }


def boxes_of(row: dict[str, str]) -> list[np.ndarray]:
    boxes = []
    for item in filter(None, row.get("boxes_xywh", "").split(";")):
        x, y, w, h = (float(v) for v in item.split(","))
        boxes.append(np.array([x, y, x + w, y + h], np.float32))
    return boxes


def groups(services: Services) -> dict:
    """Faces found per group photo, capped at the expected count; annotated boxes matched at IoU 0.3."""
    per_photo, counted, expected, boxes_total, boxes_matched = [], 0, 0, 0, 0
    for row in manifest("groups"):
        faces = faces_of(services, photo("groups", row))
        want = int(row["expected_faces"])
        boxes = boxes_of(row)
        matched = 0
        if boxes and faces:
            found = np.stack([f.detection.bbox for f in faces])
            matched = sum(bool((iou(box, found) >= 0.3).any()) for box in boxes)
        counted += min(want, len(faces))
        expected += want
        boxes_total += len(boxes)
        boxes_matched += matched
        per_photo.append({"path": row["path"], "expected": want, "found": len(faces), "boxes_matched": matched})
    return {
        "expected": expected,
        "found": counted,
        "boxes": boxes_total,
        "boxes_matched": boxes_matched,
        "photos": per_photo,
    }


def negatives(services: Services) -> dict:
    per_photo = {row["path"]: len(faces_of(services, photo("negatives", row))) for row in manifest("negatives")}
    return {"photos": len(per_photo), "faces": sum(per_photo.values()), "per_photo": per_photo}


def single_pass(services: Services) -> FaceAnalyzer:
    """One pass at the pack's input side (shaped like the photo), no extra pass, no confirmation."""
    tuning = replace(
        services.pack.tuning, close_up_pass=False, large_photo_side=0, small_photo_zoom=0.0, confirm_below=0.0
    )
    return FaceAnalyzer(replace(services.pack, tuning=tuning), services.settings.threads_per_model)


def pasted_faces(baseline: FaceAnalyzer) -> dict[int, list[bytes]]:
    """Per height in ``TINY_SIDES``: 4000x3000 JPEGs, each with one of ``PASTED`` LFW faces
    pasted in at that height. The faces are located by the plain pass, so the photos are
    the same whatever tuning is being measured."""
    photos: dict[int, list[bytes]] = defaultdict(list)
    for row in manifest("lfw")[:PASTED]:
        source = cv2.imread(str(DATASETS / "lfw" / row["path"]))
        assert source is not None, row["path"]
        box = baseline.faces(source)[0].detection.bbox
        cx, cy, side = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[3] - box[1]) * 1.6
        face = source[int(max(0, cy - side / 2)) : int(cy + side / 2), int(max(0, cx - side / 2)) : int(cx + side / 2)]
        for target in TINY_SIDES:
            canvas = np.full((3000, 4000, 3), 128, np.uint8)
            scale = target / (box[3] - box[1])
            small = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            canvas[1400 : 1400 + small.shape[0], 2100 : 2100 + small.shape[1]] = small
            photos[target].append(cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return photos


def large_photo_sides(services: Services, baseline: FaceAnalyzer) -> list[dict]:
    """How many of the small faces pasted into 4000x3000 photos each ``large_photo_side`` finds, and its time."""
    photos = pasted_faces(baseline)
    rows = []
    for side in LARGE_SIDES:
        tuning = replace(services.pack.tuning, large_photo_side=side)
        analyzer = FaceAnalyzer(replace(services.pack, tuning=tuning), services.settings.threads_per_model)
        analyzer.faces_in_bytes(photos[TINY_SIDES[-1]][0])  # warm
        found = {px: sum(bool(analyzer.faces_in_bytes(data)) for data in group) for px, group in photos.items()}
        seconds = min(sum(timed(analyzer, group[0]) for group in photos.values()) for _ in range(2))
        rows.append({"large_photo_side": side, "found": found, "ms_per_photo": 1000 * seconds / len(photos)})
    return rows


class PassRecorder:
    """Wraps the detector's model to note which passes a photo needed (by input size)."""

    def __init__(self, model, pack_input: tuple[int, int]) -> None:
        self.model, self.pack_input = model, pack_input
        self.sizes: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray, input_size: tuple[int, int], threshold: float):
        self.sizes.append((input_size[0], input_size[1]))
        return self.model.detect(image, input_size, threshold)

    def passes(self) -> str:
        """The first pass's input against the pack's (larger, smaller), then each extra pass."""
        confirm = {(side, side) for _, side in CONFIRM_VIEWS}
        first, *extra = self.sizes
        names = set()
        if max(first) > max(self.pack_input):
            names.add("large photo")
        elif max(first) < max(self.pack_input):
            names.add("small photo")
        for size in extra:
            names.add("confirm" if size in confirm else "close-up")
        return "+".join(sorted(names)) or "none"


def timed(analyzer: FaceAnalyzer, data: bytes) -> float:
    start = time.perf_counter()
    analyzer.faces_in_bytes(data)
    return time.perf_counter() - start


def timed_detection(analyzer: FaceAnalyzer, data: bytes) -> float:
    """The detector alone, on the pixels this analyzer decodes the photo to."""
    image, factor = analyzer.decode(data)
    start = time.perf_counter()
    analyzer.detector.detect(image, factor)
    return time.perf_counter() - start


def cost(services: Services, baseline: FaceAnalyzer, sets: list[str], seed: int) -> dict:
    """Per group of photos (by the passes they needed): time with them over one plain pass.

    Both the whole pipeline (decode, detect, embed the faces found) and the detector alone:
    where the first pass finds no face, the whole pipeline also pays for embedding the
    face the extra pass found, which is the point rather than a cost of the pass.
    """
    analyzer = services.analyzer
    recorder = PassRecorder(analyzer.detector.model, analyzer.detector.input_size)
    analyzer.detector.model = recorder  # type: ignore[assignment]  # records the passes, then detects as the model
    totals: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))
    try:
        for name in [*sets, "groups", "negatives"]:
            rows = manifest(name)
            random.Random(seed).shuffle(rows)
            for row in rows[: COST_SAMPLE * (5 if name == "lfw" else 1)]:
                data = photo(name, row)
                recorder.sizes.clear()
                analyzer.faces_in_bytes(data)  # warm, and note the passes
                group = recorder.passes()
                totals[group] += [
                    1,
                    min(timed(baseline, data) for _ in range(2)),
                    min(timed(analyzer, data) for _ in range(2)),
                    min(timed_detection(baseline, data) for _ in range(2)),
                    min(timed_detection(analyzer, data) for _ in range(2)),
                ]
    finally:
        analyzer.detector.model = recorder  # type: ignore[assignment]  # records the passes, then detects as the model.model
    return {
        group: {
            "photos": int(n),
            "single_ms": 1000 * s / n,
            "default_ms": 1000 * f / n,
            "ratio": f / s,
            "single_detect_ms": 1000 * ds / n,
            "default_detect_ms": 1000 * df / n,
            "detect_ratio": df / ds,
        }
        for group, (n, s, f, ds, df) in sorted(totals.items())
    }


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def report_for(pack: str, args: argparse.Namespace) -> dict:
    """Every measurement of one pack, on a data directory of its own."""
    with tempfile.TemporaryDirectory() as scratch:
        settings = replace(Settings.from_env().at(Path(scratch)), models=pack)
        with build_services(settings) as services:
            baseline = single_pass(services)
            sets = {}
            for name in args.sets:
                rows = manifest(name)
                if name == "lfw" and args.lfw_limit:
                    random.Random(args.seed).shuffle(rows)
                    rows = rows[: args.lfw_limit]
                started = time.perf_counter()
                sets[name] = labelled(services, name, rows)
                sets[name]["seconds"] = round(time.perf_counter() - started, 1)
                print(pack, name, sets[name], flush=True)
            return {
                "pack": services.pack.name,
                "tuning": vars(services.pack.tuning) | {"score_threshold": services.pack.detector_score_threshold},
                "sets": sets,
                "groups": groups(services),
                "negatives": negatives(services),
                "large_photo_sides": large_photo_sides(services, baseline),
                "cost": cost(services, baseline, args.sets, args.seed),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", default=Settings.from_env().models, help="comma-separated packs, side by side")
    parser.add_argument("--lfw-limit", type=int, default=0, help="seeded subset of LFW photos (0: all)")
    parser.add_argument("--sets", nargs="*", default=list(LABELLED), choices=LABELLED)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="reports/detection.json")
    args = parser.parse_args()
    reports = [report_for(pack, args) for pack in args.pack.split(",")]

    table(
        "Labelled sets (recall@1: one photo per identity enrolled, the others searched)",
        ["set", "pack", "photos", "faces found", "detection rate", "probes", "recall@1", "recall@1 whole photos",
         "recall@1 at default threshold"],
        [
            [n, r["pack"], s["photos"], s["found"], f"{s['detection_rate']:.2%}", s["probes"],
             f"{s['recall_at_1']:.2%}", f"{s['recall_at_1_whole_photos']:.2%}",
             f"{s['recall_at_1_default_threshold']:.2%}"]
            for n in args.sets
            for r in reports
            for s in [r["sets"][n]]
        ],
    )  # fmt: skip
    table(
        "Groups and negatives",
        ["set", "pack", "expected faces", "found", "annotated boxes matched"],
        [
            row
            for r in reports
            for row in (
                ["groups", r["pack"], r["groups"]["expected"], r["groups"]["found"],
                 f"{r['groups']['boxes_matched']}/{r['groups']['boxes']}"],
                ["negatives", r["pack"], 0, r["negatives"]["faces"], "-"],
            )
        ],
    )  # fmt: skip
    table(
        f"{PASTED} faces, each pasted into a 4000x3000 JPEG: how many are found by face height, and time per photo",
        ["pack", "large_photo_side", *(f"{px} px" for px in TINY_SIDES), "ms per photo"],
        [
            [r["pack"], t["large_photo_side"] or "0 (off)", *t["found"].values(), f"{t['ms_per_photo']:.0f}"]
            for r in reports
            for t in r["large_photo_sides"]
        ],
    )
    table(
        "Cost per photo against one plain pass at the pack's input side: whole pipeline and detector alone",
        ["pack", "passes", "photos", "pipeline: one plain pass ms", "default ms", "ratio",
         "detector: one plain pass ms", "default ms", "ratio"],
        [
            [r["pack"], k, c["photos"], f"{c['single_ms']:.1f}", f"{c['default_ms']:.1f}", f"{c['ratio']:.2f}x",
             f"{c['single_detect_ms']:.1f}", f"{c['default_detect_ms']:.1f}", f"{c['detect_ratio']:.2f}x"]
            for r in reports
            for k, c in r["cost"].items()
        ],
    )  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
