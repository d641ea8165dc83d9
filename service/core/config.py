"""Settings from environment variables: every name, default and meaning is written once.

The defaults are the dataclass defaults below; ``ENV`` names the variable that sets each
one, how its text is read and what it means. ``Settings.from_env`` applies them, the
settings table of docs/operations.md is ``settings_table()`` (tests/unit/test_docs.py keeps
the two equal), and the API's request types, its OpenAPI document and gunicorn's
configuration all read the same ``Settings`` object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from index.backend import StorageSettings
from index.vectors import STORAGES, TYPED_FILTER_KEYS, IndexSettings
from models.decode import DEFAULT_MAX_PIXELS
from models.packs import ModelPack
from models.runtime import RuntimeOverride, parse_override

from .fetch import FetchSettings, Network, parse_networks
from .grouping import GroupingSettings
from .photos import ORPHAN_GRACE_SECONDS
from .throttle import FailedLogins


@dataclass(frozen=True)
class Limits:
    """What one request may ask for: the API's request types enforce these and its document states them."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_metadata_bytes: int = 16 * 1024
    max_metadata_depth: int = 8
    max_ids: int = 1000
    max_top_k: int = 1000
    max_page: int = 1000
    max_filter_bytes: int = 16 * 1024  # a filter as compact UTF-8 JSON
    max_filter_depth: int = 6  # nesting of $and / $or
    max_filter_terms: int = 256  # conditions of a filter, each value of an $in / $nin list counted
    max_collection_chars: int = 100  # a collection's name
    top_k: int = 10  # a search's default
    page: int = 50  # a listing's default


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class FilterSettings:
    """Which metadata keys each gallery indexes for filters (besides any key a filter uses)."""

    keys: tuple[str, ...] = ()  # indexed in every gallery from the start of a serving process
    most: int = 32  # metadata keys one gallery indexes at most; filters on others read the metadata


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn serves the app, and what it protects the CPU with."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0  # gunicorn worker processes; 0: one per core
    threads: int = 4
    log_level: str = "info"
    proxy_hops: int = 0  # reverse proxies in front whose X-Forwarded-* headers are trusted
    rate_limit: float = 50.0  # requests a second per key; 0 turns the limit off
    rate_burst: int = 100
    free_logins: int = FailedLogins.FREE  # failed logins from one address before the next ones are slowed down


@dataclass(frozen=True)
class ApiSettings:
    """What the answers carry for the vendor's existing clients (docs/vendor-api.md)."""

    code_aliases: bool = True  # the code and message also under the names other vendor docs use
    link_seconds: int = 3600  # how long a signed photo link works without credentials


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
    storage: StorageSettings = field(default_factory=StorageSettings)
    models: str = "buffalo_s_edgeface"
    model_threads: int = 0  # intra-op threads per model run (models/runtime.py); 0: see threads_per_model
    model_runtime: RuntimeOverride | None = None  # None: each model on the runtime its pack chose
    threshold: float | None = None  # None: the pack's calibrated default, scaled with the gallery
    api_key: str | None = None
    api_secret: str | None = None
    orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS
    limits: Limits = field(default_factory=Limits)
    server: ServerSettings = field(default_factory=ServerSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    grouping: GroupingSettings = field(default_factory=GroupingSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)

    @property
    def worker_count(self) -> int:
        """The server's worker processes: the setting, or one per core."""
        return self.server.workers or os.cpu_count() or 1

    @property
    def threads_per_model(self) -> int:
        """``model_threads``, or else the cores divided among the workers (at least one). With one
        worker per core each runs its models on one thread: more threads per worker would make the
        workers fight over the same cores, and concurrent adds lost what the second worker gained
        (``make bench``: docs/benchmarks/2026-12-01-pipeline-speed.md)."""
        return self.model_threads or max(1, (os.cpu_count() or 1) // self.worker_count)

    @property
    def indexing(self) -> IndexSettings:
        """The index settings with the filter keys every gallery indexes (``IndexSettings.filter_keys``)."""
        return replace(self.index, filter_keys=self.filters.keys)

    @property
    def photos_dir(self) -> Path:
        return self.storage.photo_dir or self.storage.data_dir / "photos"

    def at(self, data_dir: Path) -> Settings:
        """These settings over another data directory, checkpointing only when closed: what a
        scratch run (an evaluation, a benchmark, a test) wants."""
        storage, index = replace(self.storage, data_dir=data_dir), replace(self.index, save_seconds=0)
        return replace(self, storage=storage, index=index)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The defaults, with every variable of ``ENV`` that is set (and not empty) applied;
        a value that cannot be read stops start-up with a message naming the variable."""
        settings = cls()
        for entry in ENV:
            raw = environ.get(entry.name, "").strip()
            if not raw:
                continue
            try:
                value = entry.parse(raw)
            except ValueError as exc:
                raise SystemExit(f"setting {entry.name}={raw!r} {exc}") from None
            settings = _replaced(settings, entry.path.split("."), value)
        if (problem := settings.storage.problem()) is not None:
            raise SystemExit(problem)
        return settings


def _replaced(owner: Any, path: list[str], value: Any) -> Any:
    head, *rest = path
    return replace(owner, **{head: _replaced(getattr(owner, head), rest, value) if rest else value})


# -- how each variable's text is read --------------------------------------------------------


def whole(low: int = 0) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
        if value < low:
            raise ValueError(f"must be {low} or more")
        return value

    return parse


def number(low: float | None = None, high: float | None = None, off: float | None = None) -> Callable[[str], float]:
    """A number within [low, high]; ``off`` is also accepted, meaning the feature is off."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        if value != off and ((low is not None and value < low) or (high is not None and value > high)):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise ValueError(f"must be {f'{off} (off) or ' if off is not None else ''}{span}")
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


def boolean(raw: str) -> bool:
    value = raw.lower()
    if value not in ("0", "1", "true", "false", "on", "off"):
        raise ValueError("must be 1 or 0")
    return value in ("1", "true", "on")


def switch(raw: str) -> bool | None:
    """On, off, or ``default``: None, what the model pack says."""
    return None if raw.lower() == "default" else boolean(raw)


def networks(raw: str) -> tuple[Network, ...]:
    try:
        return parse_networks(raw)
    except ValueError as exc:
        raise ValueError(f"is not a comma-separated list of networks ({exc})") from None


def runtime(raw: str) -> RuntimeOverride | None:
    """``pack`` (the pack's choice), one runtime for every model, or one per role."""
    return None if raw.lower() == "pack" else parse_override(raw)


def text(raw: str) -> str:
    return raw


def names(raw: str) -> tuple[str, ...]:
    """Comma-separated names (metadata keys, dotted for nested ones)."""
    found = tuple(name.strip() for name in raw.split(",") if name.strip())
    if any(name.startswith("$") or ".." in name or name.startswith(".") or name.endswith(".") for name in found):
        raise ValueError("must be metadata keys separated by commas (dots reach nested keys)")
    return found


@dataclass(frozen=True)
class Env:
    name: str
    path: str  # where in Settings the value goes
    meaning: str
    parse: Callable[[str], Any] = text
    shown: str | None = None  # the default as documented, where it is not the value itself

    def default(self) -> str:
        if self.shown is not None:
            return self.shown
        value: Any = Settings()
        for part in self.path.split("."):
            value = getattr(value, part)
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


ENV = (
    Env("PORT", "server.port", "HTTP port", whole(1)),
    Env("FACE_SEARCH_HOST", "server.host", "address to bind; `0.0.0.0` serves other machines (behind a TLS proxy)"),
    Env(
        "FACE_SEARCH_DATA_DIR", "storage.data_dir",
        "data directory; in cluster mode, one per replica: its throttles and metrics (`run/`)", Path,
    ),
    Env("FACE_SEARCH_MODELS", "models", "model pack name or folder"),
    Env(
        "FACE_SEARCH_CATALOG_URL", "storage.catalog_url",
        "cluster mode: the PostgreSQL catalog (`postgresql://user@host:5432/db`), with the next", shown="unset",
    ),
    Env("FACE_SEARCH_MILVUS_URI", "storage.milvus_uri", "cluster mode: the Milvus server (`http://host:19530`)",
        shown="unset"),
    Env(
        "FACE_SEARCH_PHOTO_DIR", "storage.photo_dir", "photo folder; in cluster mode one that every replica mounts",
        Path, "data dir/photos",
    ),
    Env("FACE_SEARCH_WORKERS", "server.workers", "gunicorn worker processes (0: one per core)", whole(0)),
    Env("FACE_SEARCH_THREADS", "server.threads", "request threads of each worker process", whole(1)),
    Env(
        "FACE_SEARCH_MODEL_THREADS", "model_threads",
        "threads of one model run, either runtime (0: the cores divided among the workers)", whole(0),
    ),
    Env(
        "FACE_SEARCH_MODEL_RUNTIME", "model_runtime",
        "runtime of every model (`onnxruntime`, `openvino-fp32`, `openvino-bf16`: bf16 only where the CPU has it) "
        "or per role (`detector=openvino-bf16,embedders=onnxruntime`); `pack`: each pack.json's choice",
        runtime, "pack",
    ),
    Env("FACE_SEARCH_FAISS_THREADS", "index.search_threads", "OpenMP threads per index search", whole(1)),
    Env(
        "FACE_SEARCH_THRESHOLD", "threshold", "one fixed default search threshold (cosine) for every gallery",
        number(-1.0, 1.0), "by gallery size",
    ),
    Env("FACE_SEARCH_API_KEY", "api_key", "a key ensured at start-up (with the next)", shown="unset"),
    Env("FACE_SEARCH_API_SECRET", "api_secret", "that key's secret", shown="unset"),
    Env(
        "FACE_SEARCH_CLOSE_UP_PASS", "detection.close_up_pass", "padded second pass for close-ups", switch,
        "the pack's",
    ),
    Env(
        "FACE_SEARCH_LARGE_PHOTO_SIDE", "detection.large_photo_side", "detector input side for large photos (0: off)",
        whole(0), "the pack's",
    ),
    Env(
        "FACE_SEARCH_SMALL_PHOTO_ZOOM", "detection.small_photo_zoom",
        "most a small photo is enlarged for detection (0: to the 640 input)", number(1.0, 8.0, off=0.0), "the pack's",
    ),
    Env(
        "FACE_SEARCH_MIN_FACE_SIZE", "detection.min_face_size", "smallest face stored or searched, pixels",
        number(0.0), "the pack's",
    ),
    Env(
        "FACE_SEARCH_MIN_DET_SCORE", "detection.min_det_score", "lowest detection score kept", number(0.0, 1.0),
        "the pack's",
    ),
    Env("FACE_SEARCH_MAX_BODY_BYTES", "limits.max_body_bytes", "largest request body", whole(1)),
    Env("FACE_SEARCH_MAX_PIXELS", "limits.max_pixels", "largest decoded photo", whole(1)),
    Env("FACE_SEARCH_MAX_METADATA_BYTES", "limits.max_metadata_bytes", "metadata size as compact UTF-8 JSON", whole(2)),
    Env("FACE_SEARCH_MAX_METADATA_DEPTH", "limits.max_metadata_depth", "metadata nesting", whole(1)),
    Env("FACE_SEARCH_MAX_IDS", "limits.max_ids", "ids per bulk delete", whole(1)),
    Env("FACE_SEARCH_MAX_TOP_K", "limits.max_top_k", "largest `top_k` of a search", whole(1)),
    Env("FACE_SEARCH_MAX_PAGE", "limits.max_page", "largest `limit` of a listing", whole(1)),
    Env(
        "FACE_SEARCH_MAX_FILTER_BYTES", "limits.max_filter_bytes", "a search or listing filter as compact JSON",
        whole(2),
    ),
    Env(
        "FACE_SEARCH_MAX_FILTER_DEPTH", "limits.max_filter_depth", "nesting of `$and` / `$or` in a filter", whole(1)
    ),
    Env(
        "FACE_SEARCH_MAX_FILTER_TERMS", "limits.max_filter_terms",
        "conditions in a filter, each value of an `$in` / `$nin` list counted", whole(1),
    ),
    Env(
        "FACE_SEARCH_MAX_COLLECTION_CHARS", "limits.max_collection_chars", "characters of a collection's name",
        whole(1),
    ),
    Env(
        "FACE_SEARCH_FILTER_KEYS", "filters.keys",
        "metadata keys indexed for filters in every gallery from start-up (any other key is indexed once a filter "
        f"uses it); in cluster mode the first {TYPED_FILTER_KEYS} are also typed fields of the Milvus rows, which "
        "filters read ten times faster than the others: give every replica the same list (a change moves the rows "
        "at the next start)", names, "none",
    ),
    Env(
        "FACE_SEARCH_MAX_FILTER_KEYS", "filters.most",
        "metadata keys one gallery indexes at most; filters on others read the metadata of the images", whole(0),
    ),
    Env("FACE_SEARCH_RATE_LIMIT", "server.rate_limit", "requests a second per key (0: off)", number(0.0)),
    Env("FACE_SEARCH_RATE_BURST", "server.rate_burst", "burst above the rate", whole(1)),
    Env(
        "FACE_SEARCH_FREE_LOGINS", "server.free_logins",
        f"failed logins one client address may make within {FailedLogins.WINDOW_SECONDS / 60:g} minutes; each "
        f"further attempt waits twice as long as the one before, up to {FailedLogins.MAX_DELAY_SECONDS:g} s",
        whole(0),
    ),
    Env(
        "FACE_SEARCH_CODE_ALIASES", "api.code_aliases",
        "every answer also carries its code and message under the names of the vendor's other docs "
        "(docs/vendor-api.md; 0: `status_code` and `message` only)", boolean, "1",
    ),
    Env(
        "FACE_SEARCH_LINK_SECONDS", "api.link_seconds",
        "how long the signed `url` and `thumbnail_url` of a photo work without credentials", whole(1),
    ),
    Env("FACE_SEARCH_PROXY_HOPS", "server.proxy_hops", "trusted reverse proxies for client addresses", whole(0)),
    Env(
        "FACE_SEARCH_URL_ALLOW_NETWORKS", "fetch.allow_networks",
        "comma-separated CIDRs that image URLs may reach although not public", networks, "empty",
    ),
    Env("FACE_SEARCH_URL_MAX_BYTES", "fetch.max_bytes", "largest image download", whole(1)),
    Env(
        "FACE_SEARCH_IVF_THRESHOLD", "index.ivf_threshold", "faces at which a gallery moves from exact to IVF",
        whole(1),
    ),
    Env("FACE_SEARCH_NPROBE", "index.nprobe", "IVF lists probed per search", whole(1)),
    Env(
        "FACE_SEARCH_IVF_STORAGE", "index.storage",
        "vectors in IVF lists: `flat` (float32), `sq8`, `pq` or `pq4` (codes, candidates re-scored exactly)",
        choice(*STORAGES),
    ),
    Env(
        "FACE_SEARCH_REFINE_BYTES", "index.refine_bytes",
        "bytes a face of a pq4 IVF's second code, which ranks the scan's candidates "
        "(a divisor of the embedding size; 0: none)",
        whole(0),
    ),
    Env(
        "FACE_SEARCH_SCAN_BYTES", "index.scan_bytes",
        "most bytes a face of a pq4 IVF's scan codes (4 bits per 4 dimensions up to this; wider vectors "
        "get more dimensions per 4 bits)",
        whole(1),
    ),
    Env(
        "FACE_SEARCH_CANDIDATES", "index.candidates",
        "faces a pq4 IVF's scan of ten million faces returns for the second code to rank (fewer in a "
        "smaller gallery; twice as many for a pack whose second code holds twice the dimensions a byte, "
        "as the fused pack's)", whole(1),
    ),
    Env(
        "FACE_SEARCH_RERANK", "index.rerank", "candidates of a compressed IVF scored again with the exact vectors",
        whole(1),
    ),
    Env(
        "FACE_SEARCH_REBUILD_CHURN", "index.rebuild_churn", "churn since training that makes a rebuild due",
        number(0.0),
    ),
    Env(
        "FACE_SEARCH_COMPACT_FRACTION", "index.compact_fraction",
        "share of an IVF gallery deleted at once that triggers compaction", number(0.0, 1.0),
    ),
    Env("FACE_SEARCH_REBUILD_THREADS", "index.rebuild_threads", "FAISS threads of a rebuild", whole(1)),
    Env(
        "FACE_SEARCH_INDEX_SAVE_SECONDS", "index.save_seconds", "checkpoint interval (0: only at shutdown)", whole(0)
    ),
    Env(
        "FACE_SEARCH_FOLD_AFTER", "index.fold_after",
        "changes kept beside a gallery's base file before a checkpoint folds them in", whole(1),
    ),
    Env(
        "FACE_SEARCH_INDEX_MEMORY_BYTES", "index.memory_bytes",
        "indexes one process keeps loaded; the least recently used are dropped (0: an eighth of the RAM)",
        whole(0),
    ),
    Env(
        "FACE_SEARCH_LMDB_MAP_BYTES", "storage.lmdb_map_bytes", "initial LMDB map size; it doubles whenever full",
        whole(1 << 20),
    ),
    Env(
        "FACE_SEARCH_ORPHAN_GRACE_SECONDS", "orphan_grace_seconds",
        "age at which a photo file without a record is deleted at start-up; keep it far above "
        "the time an add takes, since other processes may be adding",
        number(0.0),
    ),
    Env(
        "FACE_SEARCH_GROUP_FAR", "grouping.far",
        "per-pair false-accept rate whose cosine (the pack's calibration) links two faces in a grouping run",
        number(1e-9, 0.1), "the pack's `grouping.far`",
    ),
    Env(
        "FACE_SEARCH_GROUP_THRESHOLD", "grouping.threshold", "a fixed cosine that links two faces instead",
        number(-1.0, 1.0), "by the pack's calibration",
    ),
    Env(
        "FACE_SEARCH_GROUP_SUPPORT", "grouping.support",
        "faces on each side that must link two groups (all of a smaller group)", whole(1),
    ),
    Env("FACE_SEARCH_GROUP_MIN_FACES", "grouping.min_faces", "faces a group needs to become a person", whole(1)),
    Env(
        "FACE_SEARCH_GROUP_MIN_FACE_SIZE", "grouping.min_face_size",
        "pixels (the shorter side) below which a face never starts a group, only joins one", number(0.0),
    ),
    Env(
        "FACE_SEARCH_GROUP_MIN_DET_SCORE", "grouping.min_det_score",
        "detection score below which a face never starts a group, only joins one", number(0.0, 1.0),
    ),
    Env("FACE_SEARCH_GROUP_NEIGHBOURS", "grouping.neighbours", "nearest faces a grouping run looks at per face",
        whole(1)),
    Env(
        "FACE_SEARCH_GROUP_AFTER", "grouping.after",
        "faces added and not placed at once that start a grouping run by themselves (0: never)", whole(0),
    ),
    Env(
        "FACE_SEARCH_GROUP_COMMIT_FACES", "grouping.commit_faces",
        "faces a grouping run places per commit (a commit holds the gallery's writes for its length)", whole(1),
    ),
    Env("FACE_SEARCH_GROUP_ON_ADD", "grouping.attach", "put a new face in the person it clearly belongs to",
        boolean, "1"),
    Env(
        "FACE_SEARCH_JOB_LEASE_SECONDS", "grouping.lease_seconds",
        "a job whose worker has not reported for this long is taken over by another", number(1.0),
    ),
    Env(
        "FACE_SEARCH_NEIGHBOUR_NPROBE", "index.neighbour_nprobe", "IVF lists a grouping run's neighbour search probes",
        whole(1),
    ),
    Env(
        "FACE_SEARCH_NEIGHBOUR_CANDIDATES", "index.neighbour_candidates",
        "faces that scan returns for the second code to rank", whole(1),
    ),
    Env("FACE_SEARCH_LOG_LEVEL", "server.log_level", "log level", choice("debug", "info", "warning", "error")),
)  # fmt: skip


def settings_table() -> str:
    """The table of settings in docs/operations.md, made from ``ENV``."""
    rows = [f"| `{e.name}` [{e.default()}] | {e.meaning} |" for e in ENV]
    return "\n".join(["| variable [default] | meaning |", "| --- | --- |", *rows])
