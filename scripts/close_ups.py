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
- the same LFW photos cut, in memory only, into tight crops (scripts/evaluate.py ``tight_crop``:
  a square of twice the eye-to-mouth distance around the subject's five landmarks, found on the
  whole photo with the pack's default settings, which cuts the forehead and the chin, resized
  to 160 pixels and JPEG-encoded).

Per set, variant and embedder (each embedder of the pack alone, and the pack's fusion): the
share of photos with a face, the open-set miss rate at 1% of strangers answered over 20 random
enrolment splits (service/harness/scoring.py), and how many splits beat the current variant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from models import transforms, views
from models.analyzer import FaceAnalyzer
from models.decode import ImageDecodeError, decode_image
from models.faces import Face
from models.packs import load_pack, part_of
from service.harness.evaluation import DATASETS, ROOT, load_set, sample, tight_crop
from service.harness.scoring import SPLITS, enrolment_splits, open_set_miss

CROP_SETS = ("att-orl", "faceapi-bbt", "dlib-johns", "yale")
BORDERS = {"black": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "mirror": cv2.BORDER_REFLECT_101}
VARIANTS = (("black", "black"), ("edge", "black"), ("black", "edge"), ("edge", "edge"), ("mirror", "mirror"))


def subject(analyzer: FaceAnalyzer, image: np.ndarray) -> Face | None:
    """The face nearest the photo's centre (the labelled person in LFW-style photos), or None."""
    found = analyzer.faces(image)
    centre = np.array(image.shape[1::-1], np.float32) / 2
    return min(found, key=lambda f: float(np.linalg.norm((f.detection.bbox[:2] + f.detection.bbox[2:]) / 2 - centre)),
               default=None)  # fmt: skip


def embed(analyzer: FaceAnalyzer, photos: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(subject vectors, found mask) of every photo."""
    vectors = np.zeros((len(photos), analyzer.dim), np.float32)
    found = np.zeros(len(photos), bool)
    for i, data in enumerate(photos):
        try:
            face = subject(analyzer, decode_image(data))
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
        labelled = load_set(DATASETS / name)
        sets[name] = ([labelled.photo(i) for i in range(len(labelled.paths))], [str(p) for p in labelled.identities])
    lfw = load_set(DATASETS / "lfw")
    chosen = sample(lfw.identities, args.people)
    originals = [lfw.photo(i) for i in chosen]
    sets["lfw"] = (originals, [str(lfw.identities[i]) for i in chosen])
    crops, crop_ids = [], []
    for photo, i in zip(originals, chosen, strict=True):
        face = subject(analyzer, decode_image(photo))
        if face is not None:  # the crop needs the face's landmarks
            crops.append(tight_crop(photo, face.detection.landmarks))
            crop_ids.append(str(lfw.identities[i]))
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
