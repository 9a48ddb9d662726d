"""Conv/ConvTranspose FLOPs of an ONNX model (2 × MACs), from ONNX shape inference."""
from __future__ import annotations

import numpy as np
import onnx


def conv_flops(model: onnx.ModelProto, batch: int = 1) -> float:
    """FLOPs of every Conv and ConvTranspose at the model's input size for `batch` images."""
    inferred = onnx.shape_inference.infer_shapes(_with_batch(model, batch))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    total = 0.0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        w = weights[node.input[1]]
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv":  # out pixels × (cin/groups × kh × kw) per output channel
            out = shapes[node.output[0]]
            total += 2 * np.prod(out) * np.prod(w[1:])
        else:  # every input pixel scatters a (cout/groups × kh × kw) patch
            inp = shapes[node.input[0]]
            total += 2 * np.prod(inp) * np.prod(w[1:]) / groups
    return float(total)


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for inp in m.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = batch
    for out in m.graph.output:
        out.type.tensor_type.ClearField("shape")
    return m
