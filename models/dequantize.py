"""Block-quantised int8 ONNX weights turned into a plain float32 model, in memory.

Some packs ship their weights as int8 blocks (``DequantizeLinear`` with ``block_size``
on constant initializers), which current ONNX Runtime refuses to run: a block as long
as the whole tensor is read as per-tensor quantisation, and per-tensor quantisation
must not have a block size. Every such weight is dequantised here once, at load time,
into the float32 initializer ONNX Runtime would have computed, and the quantised
tensors, scales and zero points are dropped. Nothing is written to disk: ``models/``
knows nothing of storage, and the conversion takes well under a second.

The shipped graphs also fix their input size (640x640, batch 1). Those sizes are
freed, all but the channels and the feature width, so that one session detects on
inputs shaped like the photo and embeds every face of a photo in one batched call.
The result is serialised and its SHA-256 checked against the pack's pin by the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def dequantized_array(quantised: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block: int):
    """``(q - zero_point) * scale`` with one scale per ``block`` values along ``axis``
    (ONNX DequantizeLinear; ``block`` 0 is per-tensor, or per-axis for a 1-D scale)."""
    values = quantised.astype(np.float32) - _spread(zero_point, quantised, axis, block).astype(np.float32)
    return (values * _spread(scale, quantised, axis, block).astype(np.float32)).astype(np.float32)


def _spread(parameter: np.ndarray, quantised: np.ndarray, axis: int, block: int) -> np.ndarray:
    """A scale or zero point broadcast to the quantised tensor's shape."""
    if parameter.size == 1 and block == 0:
        return parameter.reshape(())
    axis = axis % quantised.ndim
    if block == 0:  # per-axis: one value per index along the axis
        shape = [1] * quantised.ndim
        shape[axis] = -1
        return parameter.reshape(shape)
    parameter = parameter.reshape([*quantised.shape[:axis], -1, *quantised.shape[axis + 1 :]])
    return np.repeat(parameter, block, axis=axis).take(range(quantised.shape[axis]), axis=axis)


def _attributes(node: onnx.NodeProto) -> dict:
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _free_dims(value: onnx.ValueInfoProto, keep: int | None) -> None:
    """Make every dimension symbolic except the one at index ``keep``."""
    dims = value.type.tensor_type.shape.dim
    for index, dim in enumerate(dims):
        if index != (keep % len(dims) if keep is not None else None):
            dim.ClearField("dim_value")
            dim.dim_param = f"{value.name}_{index}"


def _keep_only(field, keep) -> None:
    """Delete in place the entries of a repeated protobuf field that ``keep`` refuses (no copies)."""
    for index in reversed(range(len(field))):
        if not keep(field[index]):
            del field[index]


def float32_model(path: Path) -> bytes:
    """The model at ``path`` with every constant DequantizeLinear folded into a float32
    initializer, unused tensors and stale graph inputs dropped, and sizes freed.

    The graph is edited in place and each weight is converted on its own, so memory peaks
    at about the float32 model twice (the graph and its serialisation), not at every copy.
    """
    model = onnx.load(str(path))
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    folded = set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(name in constants for name in node.input):
            arrays = [numpy_helper.to_array(constants[name]) for name in node.input]
            zero_point = arrays[2] if len(arrays) > 2 else np.zeros(1, arrays[0].dtype)
            attributes = _attributes(node)
            value = dequantized_array(
                arrays[0], arrays[1], zero_point, attributes.get("axis", 1), attributes.get("block_size", 0)
            )
            graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
            folded.add(node.output[0])
    _keep_only(graph.node, lambda node: node.output[0] not in folded)
    used = {name for node in graph.node for name in node.input}
    _keep_only(graph.initializer, lambda tensor: tensor.name in used)
    constant_names = {tensor.name for tensor in graph.initializer}
    _keep_only(graph.input, lambda value: value.name in used and value.name not in constant_names)
    del graph.value_info[:]
    for value in graph.input:
        _free_dims(value, keep=1)  # NCHW: the channels stay
    for value in graph.output:
        _free_dims(value, keep=-1)  # the feature width stays
    return model.SerializeToString()
