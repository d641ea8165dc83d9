"""Which runtime runs a network, at which precision, and how each runtime is configured.

A pack's manifest chooses per model (``"runtime": {"detector": "openvino-bf16", "embedders":
["openvino-fp32", ...]}``; a model it does not name runs on ONNX Runtime at fp32, the
reference every accuracy figure was first measured with). An operator may override the
pack's choice for every model or per role (FACE_SEARCH_MODEL_RUNTIME: ``parse_override``).
Every runtime reads the same pinned ONNX bytes (models/packs.py checks their SHA-256);
nothing is converted to another file or fetched.

bf16 is asked for, never assumed: where the CPU does not report it (OpenVINO's
``OPTIMIZATION_CAPABILITIES``), the model runs at fp32 on the same runtime and the log says
so (``precision_for``), because emulated bf16 is slower than fp32 and no more accurate.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import onnxruntime as ort

ort.set_default_logger_severity(3)  # the models' static batch-1 output shapes warn on every batch

log = logging.getLogger(__name__)

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
# which precisions each engine can be asked for: ONNX Runtime's CPU provider runs fp32 only
OFFERED = {"onnxruntime": ("fp32",), "openvino": PRECISIONS}
ROLES = ("detector", "embedders")


@dataclass(frozen=True)
class Runtime:
    """How one network runs: the engine and the precision of its arithmetic (weights stay fp32 on disk)."""

    engine: str = "onnxruntime"
    precision: str = "fp32"

    def __str__(self) -> str:
        return self.engine if self.engine == "onnxruntime" else f"{self.engine}-{self.precision}"

    @classmethod
    def parse(cls, text: str) -> Runtime:
        """``onnxruntime``, ``openvino`` (fp32), ``openvino-fp32`` or ``openvino-bf16``."""
        engine, _, precision = text.strip().lower().partition("-")
        runtime = cls(engine, precision or "fp32")
        if engine not in ENGINES or runtime.precision not in OFFERED[engine]:
            offered = ", ".join(f"{e}-{p}" if e != "onnxruntime" else e for e in ENGINES for p in OFFERED[e])
            raise ValueError(f"{text!r} is not a runtime ({offered})")
        return runtime


REFERENCE = Runtime()


@dataclass(frozen=True)
class RuntimeOverride:
    """An operator's choice over the pack's: one runtime for every model, or one per role (None keeps the pack's)."""

    detector: Runtime | None = None
    embedders: Runtime | None = None

    def __str__(self) -> str:
        return ",".join(f"{role}={getattr(self, role)}" for role in ROLES if getattr(self, role) is not None)


def parse_override(text: str) -> RuntimeOverride:
    """``openvino-bf16`` (every model), or ``detector=openvino-bf16,embedders=openvino-fp32`` (per role)."""
    if "=" not in text:
        every = Runtime.parse(text)
        return RuntimeOverride(every, every)
    chosen: dict[str, Runtime] = {}
    for item in text.split(","):
        role, _, runtime = item.partition("=")
        if role.strip() not in ROLES:
            raise ValueError(f"names {role.strip()!r}, not one of the roles {', '.join(ROLES)}")
        chosen[role.strip()] = Runtime.parse(runtime)
    return RuntimeOverride(**chosen)


def precision_for(runtime: Runtime, capabilities: Iterable[str], name: str = "the model") -> str:
    """The precision ``runtime`` really runs at on a CPU reporting ``capabilities`` (OpenVINO's
    names: ``BF16``, ``FP32``, ...): bf16 only where the CPU has it, else fp32."""
    if runtime.precision == "bf16" and "BF16" not in set(capabilities):
        log.warning("%s: bf16 asked for, but this CPU does not report bf16; running it at fp32", name)
        return "fp32"
    return runtime.precision


def session_options(threads: int) -> ort.SessionOptions:
    """One session per model per process; ``threads`` intra-op threads, no inter-op pool.

    The HTTP server runs requests on several threads that share these sessions. ``threads``
    comes from the settings (``Settings.threads_per_model``): FACE_SEARCH_MODEL_THREADS, by
    default 0, which gives each worker process the cores divided among the workers (one
    thread each with a worker per core). The pool's threads sleep instead of spinning
    between runs, so an idle pool never holds a core that another request's run needs.

    No memory arena: inputs are shaped like each photo and batches hold all of a photo's
    faces, so an arena grows to the largest run ever seen and keeps it. Without it the
    process holds a fraction of that after a large group photo, at the same time per photo
    (scripts/pack_costs.py; docs/benchmarks/2026-12-01-evaluation.md).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


PROVIDERS = ["CPUExecutionProvider"]


def openvino_config(threads: int, precision: str) -> dict[str, str]:
    """OpenVINO's CPU plugin configured like the ONNX Runtime sessions: ``threads`` threads for one
    run, one stream (a worker process is given its share of the cores, not the machine), latency
    rather than throughput, and the precision asked for explicitly (left to itself the plugin picks
    bf16 on some CPUs, which would change the embeddings without anyone choosing it)."""
    return {
        "INFERENCE_NUM_THREADS": str(max(1, threads)),
        "NUM_STREAMS": "1",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
        "ENABLE_CPU_PINNING": "NO",  # several worker processes share the cores; none may claim one
    }
