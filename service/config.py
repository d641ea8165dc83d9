"""Settings from environment variables, each with a documented default (see README)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from index.vectors import IndexSettings

from .fetch import FetchSettings, parse_networks


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError as exc:
        raise SystemExit(f"setting {name}={raw!r} is not a whole number") from exc


def _float_or_none(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"setting {name}={raw!r} is not a number") from exc


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    models: str = "buffalo_s"
    model_threads: int = 1
    api_key: str | None = None
    api_secret: str | None = None
    threshold: float | None = None  # None: the pack's calibrated default
    max_body_bytes: int = 32 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024
    index: IndexSettings = field(default_factory=IndexSettings)
    index_save_seconds: int = 60
    lmdb_map_bytes: int = 1 << 30
    fetch: FetchSettings = field(default_factory=FetchSettings)

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
            model_threads=_int("FACE_SEARCH_MODEL_THREADS", 1),
            api_key=os.environ.get("FACE_SEARCH_API_KEY") or None,
            api_secret=os.environ.get("FACE_SEARCH_API_SECRET") or None,
            threshold=_float_or_none("FACE_SEARCH_THRESHOLD"),
            max_body_bytes=_int("FACE_SEARCH_MAX_BODY_BYTES", 32 * 1024 * 1024),
            max_metadata_bytes=_int("FACE_SEARCH_MAX_METADATA_BYTES", 16 * 1024),
            index=IndexSettings(
                ivf_threshold=_int("FACE_SEARCH_IVF_THRESHOLD", 50_000),
                nprobe=_int("FACE_SEARCH_NPROBE", 16),
                storage=_env("FACE_SEARCH_IVF_STORAGE", "flat"),
            ),
            index_save_seconds=_int("FACE_SEARCH_INDEX_SAVE_SECONDS", 60),
            lmdb_map_bytes=_int("FACE_SEARCH_LMDB_MAP_BYTES", 1 << 30),
            fetch=FetchSettings(
                allow_networks=parse_networks(_env("FACE_SEARCH_URL_ALLOW_NETWORKS", "")),
                max_bytes=_int("FACE_SEARCH_URL_MAX_BYTES", 20 * 1024 * 1024),
            ),
        )
