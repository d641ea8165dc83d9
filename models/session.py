"""The base of every model: one session on the runtime its pack chose, and its I/O shapes.

Each model class (``scrfd``, ``yunet``, ``arcface``, ``sface``, ``edgeface``) only turns
pixels into the blob its network expects and decodes what comes out; opening the session
on its runtime, naming inputs and outputs and running it are the same for all of them,
and live here: ``Session`` with one implementation per runtime (models/runtime.py says
which, and how each is configured).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .runtime import PROVIDERS, REFERENCE, Runtime, openvino_config, precision_for, session_options

Shape = list[int | str | None]


class Session(ABC):
    """One network opened on one runtime; ``run`` is safe to call from several threads at once."""

    runtime: Runtime  # as it really runs (bf16 asked for on a CPU without it runs at fp32)
    input_shape: Shape
    output_shapes: list[Shape]

    @abstractmethod
    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Every output, in the graph's order, for one contiguous NCHW float32 blob."""


class OnnxRuntimeSession(Session):
    """ONNX Runtime's CPU provider: its ``run`` may be called from several threads on one session."""

    def __init__(self, model: Path | bytes, threads: int) -> None:
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, sess_options=session_options(threads), providers=PROVIDERS)
        self.runtime = REFERENCE
        self.input = self.session.get_inputs()[0]
        self.input_shape = list(self.input.shape)
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.output_shapes = [list(output.shape) for output in self.session.get_outputs()]

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input.name: blob})


@cache
def openvino_core():
    """One OpenVINO core per process (imported on first use: a pack on ONNX Runtime never loads it)."""
    import openvino

    return openvino.Core()


@cache
def compiled(model: str | bytes, threads: int, precision: str):
    """A network compiled once per process for a configuration: compiling takes several times
    what opening it on ONNX Runtime does, and a process that builds its models more than once (a
    script, a test run) would pay it each time. A compiled model is safe to share: every session
    over it makes its own infer requests."""
    core = openvino_core()
    return core.compile_model(core.read_model(model), "CPU", openvino_config(threads, precision))


class OpenVinoSession(Session):
    """OpenVINO's CPU plugin, compiled once for any input shape the graph leaves open.

    A compiled model may be shared by threads but an infer request may not: each thread
    that runs the network gets its own request (made on its first run, kept for the
    thread's life), so concurrent requests never share input or output buffers. Outputs
    are copied out of the request's tensors, which its next run overwrites.
    """

    def __init__(self, model: Path | bytes, threads: int, runtime: Runtime) -> None:
        core = openvino_core()
        name = model.name if isinstance(model, Path) else "a converted model"
        precision = precision_for(runtime, core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"), name)
        self.runtime = Runtime(runtime.engine, precision)
        self.compiled = compiled(str(model) if isinstance(model, Path) else model, threads, precision)
        self.input_shape = _shape(self.compiled.inputs[0].get_partial_shape())
        self.output_shapes = [_shape(output.get_partial_shape()) for output in self.compiled.outputs]
        self.local = threading.local()

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.compiled.create_infer_request()
        request.infer({0: blob})
        return [request.get_output_tensor(i).data.copy() for i in range(len(self.output_shapes))]


def _shape(partial) -> Shape:
    return [dim.get_length() if dim.is_static else None for dim in partial]


def open_session(model: Path | bytes, runtime: Runtime = REFERENCE, threads: int = 1) -> Session:
    if runtime.engine == "openvino":
        return OpenVinoSession(model, threads, runtime)
    return OnnxRuntimeSession(model, threads)


class OnnxModel:
    """One ONNX network on the CPU, on the runtime its pack chose; safe to share between threads."""

    def __init__(self, model: Path | bytes, threads: int = 1, runtime: Runtime = REFERENCE) -> None:
        self.session = open_session(model, runtime, threads)

    @property
    def runtime(self) -> Runtime:
        return self.session.runtime

    @property
    def input_shape(self) -> Shape:
        return self.session.input_shape

    @property
    def output_shape(self) -> Shape:
        return self.session.output_shapes[0]

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Every output, in the graph's order, for one NCHW float32 blob."""
        return self.session.run(np.ascontiguousarray(blob, np.float32))


def fixed(dim: int | str | None) -> int:
    """A dimension of a model's input or output that the model fixes (not a symbolic or unknown one)."""
    if not isinstance(dim, int):
        raise ValueError(f"the model leaves this dimension open ({dim!r})")
    return dim
