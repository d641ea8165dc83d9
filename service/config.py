"""Settings from environment variables, each with a documented default (see README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from index.vectors import STORAGES, IndexSettings
from models.decode import DEFAULT_MAX_PIXELS
from models.packs import ModelPack

from .fetch import FetchSettings, parse_networks


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError as exc:
        raise SystemExit(f"setting {name}={raw!r} is not a whole number") from exc


def _float(name: str, default: float) -> float:
    value = _float_or_none(name)
    return default if value is None else value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env(name, default)
    if value not in choices:
        raise SystemExit(f"setting {name}={value!r} must be one of {', '.join(choices)}")
    return value


def _float_or_none(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"setting {name}={raw!r} is not a number") from exc


def _int_or_none(name: str) -> int | None:
    value = _int(name, -1) if os.environ.get(name) not in (None, "") else None
    if value is not None and value < 0:
        raise SystemExit(f"setting {name}={value} must be 0 or more")
    return value


def _switch_or_none(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "default"):
        return None
    if raw not in ("0", "1", "true", "false", "on", "off"):
        raise SystemExit(f"setting {name}={raw!r} must be 1 or 0")
    return raw in ("1", "true", "on")


def _zoom_or_none(name: str) -> float | None:
    value = _float_or_none(name)
    if value is not None and value != 0 and not 1.0 <= value <= 8.0:
        raise SystemExit(f"setting {name}={value} must be 0 (off) or from 1 to 8")
    return value


def _score_or_none(name: str) -> float | None:
    value = _float_or_none(name)
    if value is not None and not 0.0 <= value <= 1.0:
        raise SystemExit(f"setting {name}={value} must be from 0 to 1")
    return value


@dataclass(frozen=True)
class DetectionSettings:
    """Overrides of the pack's detector tuning (models/packs.py); None keeps the pack's value."""

    min_face_size: float | None = None
    min_det_score: float | None = None
    close_up_pass: bool | None = None
    large_photo_side: int | None = None
    small_photo_zoom: float | None = None

    def applied_to(self, pack: ModelPack) -> ModelPack:
        tuning = pack.tuning
        chosen = {
            name: value
            for name in ("min_face_size", "close_up_pass", "large_photo_side", "small_photo_zoom")
            if (value := getattr(self, name)) is not None
        }
        score = pack.detector_score_threshold if self.min_det_score is None else self.min_det_score
        return replace(pack, detector_score_threshold=score, tuning=replace(tuning, **chosen))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    models: str = "buffalo_s"
    faiss_threads: int = 1
    model_threads: int = 2  # intra-op threads per model run: see models/runtime.py
    api_key: str | None = None
    api_secret: str | None = None
    threshold: float | None = None  # None: the pack's calibrated default
    max_body_bytes: int = 32 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024
    max_metadata_depth: int = 8
    max_ids: int = 1000
    max_top_k: int = 1000
    max_pixels: int = DEFAULT_MAX_PIXELS
    index: IndexSettings = field(default_factory=IndexSettings)
    index_save_seconds: int = 60
    lmdb_map_bytes: int = 1 << 30
    fetch: FetchSettings = field(default_factory=FetchSettings)
    rate_limit: float = 50.0  # requests a second per key; 0 turns the limit off
    rate_burst: int = 100
    proxy_hops: int = 0  # reverse proxies in front whose X-Forwarded-* headers are trusted
    detection: DetectionSettings = field(default_factory=DetectionSettings)

    @property
    def lmdb_dir(self) -> Path:
        return self.data_dir / "lmdb"

    @property
    def photos_dir(self) -> Path:
        return self.data_dir / "photos"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "indexes"

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            data_dir=Path(_env("FACE_SEARCH_DATA_DIR", "data")),
            models=_env("FACE_SEARCH_MODELS", "buffalo_s"),
            faiss_threads=_int("FACE_SEARCH_FAISS_THREADS", 1),
            model_threads=_int("FACE_SEARCH_MODEL_THREADS", 2),
            api_key=os.environ.get("FACE_SEARCH_API_KEY") or None,
            api_secret=os.environ.get("FACE_SEARCH_API_SECRET") or None,
            threshold=_float_or_none("FACE_SEARCH_THRESHOLD"),
            max_body_bytes=_int("FACE_SEARCH_MAX_BODY_BYTES", 32 * 1024 * 1024),
            max_metadata_bytes=_int("FACE_SEARCH_MAX_METADATA_BYTES", 16 * 1024),
            max_metadata_depth=_int("FACE_SEARCH_MAX_METADATA_DEPTH", 8),
            max_ids=_int("FACE_SEARCH_MAX_IDS", 1000),
            max_top_k=_int("FACE_SEARCH_MAX_TOP_K", 1000),
            max_pixels=_int("FACE_SEARCH_MAX_PIXELS", DEFAULT_MAX_PIXELS),
            index=IndexSettings(
                ivf_threshold=_int("FACE_SEARCH_IVF_THRESHOLD", 50_000),
                nprobe=_int("FACE_SEARCH_NPROBE", 128),
                storage=_choice("FACE_SEARCH_IVF_STORAGE", "flat", STORAGES),
                rebuild_churn=_float("FACE_SEARCH_REBUILD_CHURN", 0.5),
                compact_fraction=_float("FACE_SEARCH_COMPACT_FRACTION", 0.2),
                rebuild_threads=_int("FACE_SEARCH_REBUILD_THREADS", 1),
            ),
            index_save_seconds=_int("FACE_SEARCH_INDEX_SAVE_SECONDS", 60),
            lmdb_map_bytes=_int("FACE_SEARCH_LMDB_MAP_BYTES", 1 << 30),
            rate_limit=_float("FACE_SEARCH_RATE_LIMIT", 50.0),
            rate_burst=_int("FACE_SEARCH_RATE_BURST", 100),
            proxy_hops=_int("FACE_SEARCH_PROXY_HOPS", 0),
            detection=DetectionSettings(
                min_face_size=_float_or_none("FACE_SEARCH_MIN_FACE_SIZE"),
                min_det_score=_score_or_none("FACE_SEARCH_MIN_DET_SCORE"),
                close_up_pass=_switch_or_none("FACE_SEARCH_CLOSE_UP_PASS"),
                large_photo_side=_int_or_none("FACE_SEARCH_LARGE_PHOTO_SIDE"),
                small_photo_zoom=_zoom_or_none("FACE_SEARCH_SMALL_PHOTO_ZOOM"),
            ),
            fetch=FetchSettings(
                allow_networks=parse_networks(_env("FACE_SEARCH_URL_ALLOW_NETWORKS", "")),
                max_bytes=_int("FACE_SEARCH_URL_MAX_BYTES", 20 * 1024 * 1024),
            ),
        )
