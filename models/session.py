"""The base of every model: one ONNX Runtime session, configured on purpose, and its I/O names.

Each model class (``scrfd``, ``yunet``, ``arcface``, ``sface``) only turns pixels into
the blob its network expects and decodes what comes out; opening the session, naming
inputs and outputs and running it are the same for all of them, and live here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .runtime import PROVIDERS, session_options


class OnnxModel:
    """One network on the CPU; safe to share between threads (ONNX Runtime's ``run`` is)."""

    def __init__(self, model: Path | bytes, threads: int = 1) -> None:
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, sess_options=session_options(threads), providers=PROVIDERS)
        self.input = self.session.get_inputs()[0]
        self.output_names = [output.name for output in self.session.get_outputs()]

    @property
    def input_shape(self) -> list[int | str | None]:
        return list(self.input.shape)

    @property
    def output_shape(self) -> list[int | str | None]:
        return list(self.session.get_outputs()[0].shape)

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """Every output, in the graph's order, for one NCHW float32 blob."""
        return self.session.run(self.output_names, {self.input.name: np.ascontiguousarray(blob, np.float32)})


def fixed(dim: int | str | None) -> int:
    """A dimension of a model's input or output that the model fixes (not a symbolic or unknown one)."""
    if not isinstance(dim, int):
        raise ValueError(f"the model leaves this dimension open ({dim!r})")
    return dim
