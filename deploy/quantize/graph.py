"""Read-only views of an ONNX graph that the quantizer needs: its convolutions and constants.

Nodes are identified by name; an unnamed node is called `<op_type>#<position in graph.node>`
(e.g. `Conv#3`), everywhere in this package, so plans and QDQ models agree on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from deploy.errors import UnsupportedError
from deploy.quantize.weights import WEIGHT_AXIS

CONV_TYPES = tuple(WEIGHT_AXIS)  # ("Conv", "ConvTranspose")


def node_name(node: onnx.NodeProto, position: int) -> str:
    return node.name or f"{node.op_type}#{position}"


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and outputs of `Constant` nodes (with a `value` tensor), as numpy arrays."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


@dataclass(frozen=True)
class ConvNode:
    name: str
    op_type: str                 # Conv or ConvTranspose
    position: int                # index in graph.node
    conv_index: int | None       # index among `Conv` nodes in graph order (skip_conv_layers); None for others
    input: str                   # the activation (input 0)
    output: str
    weight: str                  # input 1
    weight_shape: tuple[int, ...] | None  # None: the weight is not a constant
    group: int

    @property
    def in_channels(self) -> int | None:
        if self.weight_shape is None:
            return None
        return self.weight_shape[1] * self.group if self.op_type == "Conv" else self.weight_shape[0]

    @property
    def out_channels(self) -> int | None:
        if self.weight_shape is None:
            return None
        return self.weight_shape[0] if self.op_type == "Conv" else self.weight_shape[1] * self.group

    @property
    def is_2d(self) -> bool:
        return self.weight_shape is not None and len(self.weight_shape) == 4


def conv_nodes(model: onnx.ModelProto, consts: dict[str, np.ndarray] | None = None) -> list[ConvNode]:
    """Every Conv/ConvTranspose of the main graph, in graph order."""
    consts = constants(model) if consts is None else consts
    out, k = [], 0
    for pos, node in enumerate(model.graph.node):
        if node.op_type not in CONV_TYPES or node.domain not in ("", "ai.onnx"):
            continue
        w = consts.get(node.input[1])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        out.append(ConvNode(node_name(node, pos), node.op_type, pos, k if node.op_type == "Conv" else None,
                            node.input[0], node.output[0], node.input[1],
                            None if w is None else tuple(w.shape), group))
        k += node.op_type == "Conv"
    return out


def single_input(model: onnx.ModelProto) -> tuple[str, list[int | str]]:
    """The one real graph input (not an initializer) and its dims (int, or a str/'' if symbolic)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UnsupportedError(f"int8 calibration supports models with one input; this one has "
                               f"{[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims
