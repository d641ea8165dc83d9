"""Download an official InsightFace model pack into models/packs/NAME and write its manifest.

Needs a machine that can reach GitHub's release downloads; the service itself never
downloads anything. Offline, it stops with a clear error and changes nothing: that error
path is all that can be tested on a machine without internet access.

The archive is checked against the SHA-256 pinned below when one is known; the SHA-256 of
each extracted ONNX file is then written into the pack's manifest, and the service
refuses to start if a file later stops matching it. Use --from-dir to register weights you
copied by hand (for example buffalo_l's det_10g.onnx and w600k_r50.onnx).

  python scripts/fetch_models.py buffalo_l
  python scripts/fetch_models.py buffalo_l --from-dir ~/Downloads/buffalo_l
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from models.packs import MANIFEST, PACKS_DIR, sha256_of

RELEASE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"
# Detector and embedder of each official pack; archive SHA-256 where it has been pinned.
PACKS = {
    "buffalo_l": {"detector": "det_10g.onnx", "embedder": "w600k_r50.onnx", "archive_sha256": None},
    "buffalo_m": {"detector": "det_2.5g.onnx", "embedder": "w600k_r50.onnx", "archive_sha256": None},
    "buffalo_s": {"detector": "det_500m.onnx", "embedder": "w600k_mbf.onnx", "archive_sha256": None},
    "antelopev2": {"detector": "scrfd_10g_bnkps.onnx", "embedder": "glintr100.onnx", "archive_sha256": None},
}
# Until evaluated with scripts/evaluate.py, a new pack starts from buffalo_s's threshold.
DEFAULT_THRESHOLD = 0.4


class FetchError(RuntimeError):
    pass


def download(url: str, timeout: float = 30.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(
            f"cannot download {url}: {exc}. This machine may be offline; copy the pack's ONNX files "
            "into a folder and run this script with --from-dir instead"
        ) from exc


def write_manifest(name: str, target: Path, spec: dict) -> Path:
    entries = {}
    for role in ("detector", "embedder"):
        path = target / spec[role]
        if not path.is_file():
            raise FetchError(f"{path} is missing: the pack needs {spec['detector']} and {spec['embedder']}")
        entries[role] = {"file": spec[role], "sha256": sha256_of(path)}
    entries["detector"].update({"input_size": 640, "score_threshold": 0.5})
    manifest = {
        "name": name,
        "licence": "InsightFace pretrained models: non-commercial research use only",
        **entries,
        "search_threshold": DEFAULT_THRESHOLD,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return target / MANIFEST


def fetch(name: str, source: Path | None, packs_dir: Path = PACKS_DIR) -> Path:
    spec = PACKS.get(name)
    if spec is None:
        raise FetchError(f"unknown pack {name!r}; known: {', '.join(sorted(PACKS))}")
    target = packs_dir / name
    if source is not None:
        target.mkdir(parents=True, exist_ok=True)
        for role in ("detector", "embedder"):
            file = spec[role]
            found = next(source.rglob(file), None) if file else None
            if file is None or found is None:
                raise FetchError(f"{file} not found under {source}")
            (target / file).write_bytes(found.read_bytes())
        return write_manifest(name, target, spec)
    archive = download(RELEASE_URL.format(name=name))
    digest = hashlib.sha256(archive).hexdigest()
    if spec["archive_sha256"] and digest != spec["archive_sha256"]:
        raise FetchError(f"{name}.zip has SHA-256 {digest}, expected {spec['archive_sha256']}: not saved")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
        for member in bundle.namelist():
            if Path(member).name in (spec["detector"], spec["embedder"]):
                (target / Path(member).name).write_bytes(bundle.read(member))
    print(f"{name}.zip SHA-256 {digest}")
    return write_manifest(name, target, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"pack name: {', '.join(sorted(PACKS))}")
    parser.add_argument("--from-dir", type=Path, help="register ONNX files found under this folder instead")
    parser.add_argument("--packs-dir", type=Path, default=PACKS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        manifest = fetch(args.name, args.from_dir, args.packs_dir)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {manifest}; use it with FACE_SEARCH_MODELS={args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
