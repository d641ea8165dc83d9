"""What fills a view beyond a close-up's edges, before detection and in the alignment, measured.

  python scripts/close_ups.py [--pack buffalo_s_edgeface] [--people 400] [--out reports/close_ups.json]

A face cut from an ID card or a selfie fills its photo, often with the forehead and chin cut
off. The detector sees such a photo a second time on a padded canvas (models/views.py
``BORDER``: black, or the photo's edge pixels repeated), and the 5-point alignment warps a
112-pixel crop that reaches beyond the photo (models/transforms.py ``ALIGN_BORDER``). Each
combination is run over:

- the crop-like shared sets (att-orl, faceapi-bbt, dlib-johns) and yale, as they are;
- a sample of LFW photos as they are (``--people`` people with two photos or more, up to four
  photos each, and half as many people with one photo, who are only strangers);
- the same LFW photos cut, in memory only, into tight crops: a square of twice the eye-to-mouth
  distance around the subject's five landmarks (found on the whole photo with the pack's
  default settings), which cuts the forehead and the chin, resized to 160 pixels and JPEG-encoded.

Per set, variant and embedder (each embedder of the pack alone, and the pack's fusion): the
share of photos with a face, the open-set miss rate at 1% of strangers answered over 20 random
enrolment splits (scripts/evaluation.py), and how many splits beat the current variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from models import transforms, views
from models.analyzer import FaceAnalyzer
from models.decode import ImageDecodeError
from models.packs import load_pack, part_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluation import SPLITS, enrolment_splits, open_set_miss

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
CROP_SETS = ("att-orl", "faceapi-bbt", "dlib-johns", "yale")
BORDERS = {"black": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "mirror": cv2.BORDER_REFLECT_101}
VARIANTS = (("black", "black"), ("edge", "black"), ("black", "edge"), ("edge", "edge"), ("mirror", "mirror"))
TIGHT_SIDE = 160
TIGHT_SPAN = 2.0  # the crop's side, in eye-to-mouth distances: forehead and chin cut


def rows_of(name: str) -> list[dict[str, str]]:
    with open(DATASETS / name / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def lfw_sample(people: int, seed: int = 3) -> list[dict[str, str]]:
    by_person: dict[str, list[dict[str, str]]] = {}
    for row in rows_of("lfw"):
        by_person.setdefault(row["identity"], []).append(row)
    rng = random.Random(seed)
    repeat = rng.sample(sorted(p for p, rows in by_person.items() if len(rows) > 1), people)
    single = rng.sample(sorted(p for p, rows in by_person.items() if len(rows) == 1), people // 2)
    return [row for person in sorted(repeat + single) for row in by_person[person][:4]]


def subject(analyzer: FaceAnalyzer, image: np.ndarray):
    """The face nearest the photo's centre (the labelled person in LFW-style photos), or None."""
    found = analyzer.faces(image)
    centre = np.array(image.shape[1::-1], np.float32) / 2
    return min(found, key=lambda f: float(np.linalg.norm((f.detection.bbox[:2] + f.detection.bbox[2:]) / 2 - centre)),
               default=None)  # fmt: skip


def tight_crop(image: np.ndarray, landmarks: np.ndarray, span: float = TIGHT_SPAN, side: int = TIGHT_SIDE) -> bytes:
    """An axis-aligned square of ``span`` eye-to-mouth distances centred on the five landmarks, at ``side`` pixels."""
    eyes, mouth = landmarks[:2].mean(axis=0), landmarks[3:].mean(axis=0)
    size = span * float(np.linalg.norm(mouth - eyes))
    left, top = landmarks.mean(axis=0) - size / 2
    scale = side / size
    matrix = np.float32([[scale, 0, -left * scale], [0, scale, -top * scale]])
    crop = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def embed(analyzer: FaceAnalyzer, photos: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(subject vectors, found mask) of every photo."""
    vectors = np.zeros((len(photos), analyzer.dim), np.float32)
    found = np.zeros(len(photos), bool)
    for i, data in enumerate(photos):
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            face = subject(analyzer, image)
        except ImageDecodeError:
            face = None
        if face is not None:
            vectors[i], found[i] = face.embedding, True
    return vectors, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default="buffalo_s_edgeface")
    parser.add_argument("--people", type=int, default=400, help="LFW people with two photos or more in the sample")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "close_ups.json")
    args = parser.parse_args(argv)
    pack = load_pack(args.pack)
    analyzer = FaceAnalyzer(pack)
    names = [Path(m.path).stem for m in pack.embedders]
    sets: dict[str, tuple[list[bytes], list[str]]] = {}
    for name in CROP_SETS:
        rows = rows_of(name)
        sets[name] = ([(DATASETS / name / r["path"]).read_bytes() for r in rows], [r["identity"] for r in rows])
    lfw = lfw_sample(args.people)
    originals = [(DATASETS / "lfw" / r["path"]).read_bytes() for r in lfw]
    sets["lfw"] = (originals, [r["identity"] for r in lfw])
    crops, crop_ids = [], []
    for data, row in zip(originals, lfw, strict=True):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        face = subject(analyzer, image)
        if face is not None:  # the crop needs the face's landmarks
            crops.append(tight_crop(image, face.detection.landmarks))
            crop_ids.append(row["identity"])
    sets["lfw-tight"] = (crops, crop_ids)
    results: dict = {"pack": args.pack, "embedders": names, "sets": {}}
    for name, (photos, identities) in sets.items():
        splits = enrolment_splits(identities)
        per_variant = {}
        for canvas, warp in VARIANTS:
            views.BORDER, transforms.ALIGN_BORDER = BORDERS[canvas], BORDERS[warp]
            started = time.perf_counter()
            vectors, found = embed(analyzer, photos)
            seconds = time.perf_counter() - started
            scored = {"fusion": vectors} if len(names) > 1 else {}
            for part, stem in enumerate(names):
                scored[stem] = part_of(vectors, analyzer.embedder.dims, part) if len(names) > 1 else vectors
            per_variant[f"{canvas} canvas, {warp} warp"] = {
                "found": float(found.mean()),
                "ms_per_photo": 1000 * seconds / len(photos),
                "miss": {k: [open_set_miss(v, found, identities, s)[0] for s in splits] for k, v in scored.items()},
            }
            print(f"{name}: {canvas} canvas, {warp} warp done ({seconds:.0f} s)", file=sys.stderr)
        results["sets"][name] = {"photos": len(photos), "people": len(set(identities)), "variants": per_variant}
    views.BORDER, transforms.ALIGN_BORDER = cv2.BORDER_CONSTANT, cv2.BORDER_CONSTANT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    embedders = ["fusion", *results["embedders"]] if len(results["embedders"]) > 1 else results["embedders"]
    lines = [
        f"Open-set miss at 1% of strangers answered, mean of {SPLITS} enrolment splits (splits better than the first "
        "variant / worse); faces found.",
        "",
        "| set | photos | variant | faces found | " + " | ".join(embedders) + " |",
        "| --- | ---: | --- | ---: |" + " ---: |" * len(embedders),
    ]
    for name, result in results["sets"].items():
        variants = result["variants"]
        first = next(iter(variants.values()))
        for label, variant in variants.items():
            cells = []
            for embedder in embedders:
                misses, base = np.array(variant["miss"][embedder]), np.array(first["miss"][embedder])
                cells.append(f"{100 * misses.mean():.2f}% ({int((misses < base).sum())}/{int((misses > base).sum())})")
            lines.append(
                f"| {name} | {result['photos']} | {label} | {100 * variant['found']:.1f}% | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
