"""ONNX Runtime sessions configured on purpose rather than by default."""

from __future__ import annotations

import onnxruntime as ort

ort.set_default_logger_severity(3)  # the models' static batch-1 output shapes warn on every batch


def session_options(threads: int) -> ort.SessionOptions:
    """One session per model per process; ``threads`` intra-op threads, no inter-op pool.

    The HTTP server runs requests on several threads that share these sessions, so each
    run is kept to a small, fixed number of threads to avoid oversubscribing the cores.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


PROVIDERS = ["CPUExecutionProvider"]
