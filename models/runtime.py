"""ONNX Runtime sessions configured on purpose rather than by default."""

from __future__ import annotations

import onnxruntime as ort

ort.set_default_logger_severity(3)  # the models' static batch-1 output shapes warn on every batch


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
