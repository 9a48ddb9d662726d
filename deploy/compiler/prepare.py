"""Graph preparation: make a user's ONNX graph the static dataflow graph TVM's importer expects.

Exporters write graphs that only become static once the input shape is known: `torch.onnx` emits
`F.pad` amounts as Shape/Slice/Concat/Cast subgraphs (TVM: "Dynamic pads are not supported"),
weights built at run time by ConstantOfShape/Mul (no conv sees a constant weight, so none gets a
fast schedule), training-only Dropout (a tuple in Relax that the NHWC layout pass cannot convert)
and old opset versions (the frontend's legacy converters assert). Each step below logs what it
changed:

1. opset upgrade to MIN_OPSET (onnx's version converter);
2. the YAML's C/H/W written into the graph inputs, batch left symbolic;
3. onnxsim (shape inference, constant folding through onnxruntime, Dropout/Identity elimination,
   Conv+BN fusion). Measured against the alternatives on a UNet with torch's computed `F.pad`:
   onnxslim 0.1.98 folded the same graph too, but into wrong pad amounts (the reversed-pads
   Slice; outputs off by 0.03), and onnxruntime's offline basic optimizer left every
   Shape/Gather pad subgraph unfolded.
`backend.compile.simplify: false` skips 3 (1 and 2 are needed for a correct import).
N-ary Sum/Max/Min/Mean are imported as binary chains (deploy.compiler.converters).
"""
from __future__ import annotations

import contextlib
import io
from collections import Counter
from typing import Callable

import onnx

MIN_OPSET = 13

Log = Callable[[str], None]


def prepare(model: onnx.ModelProto, chw: dict[str, tuple[int, int, int]], log: Log,
            simplify: bool = True) -> onnx.ModelProto:
    """The prepared copy of `model` (the original is not modified); every step goes to `log`."""
    before = _op_count(model)
    model = upgrade_opset(model, log)
    model = fix_input_shapes(model, chw, log)
    if simplify:
        model = simplify_graph(model, log)
    else:
        log("prepare: simplification off (backend.compile.simplify: false)")
    after = _op_count(model)
    log(f"prepare: {sum(before.values())} -> {sum(after.values())} nodes; "
        + ", ".join(f"{op} {before[op]}->{after[op]}" for op in sorted(before | after) if before[op] != after[op]))
    return model


def _op_count(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def upgrade_opset(model: onnx.ModelProto, log: Log) -> onnx.ModelProto:
    """Graphs below MIN_OPSET are converted up: TVM's converters for opsets < 7 assert on
    per-channel PRelu and the like, and onnxruntime dropped several of those versions too."""
    version = _default_opset(model)
    if version >= MIN_OPSET:
        return model
    from onnx import version_converter
    try:
        out = version_converter.convert_version(model, MIN_OPSET)
    except Exception as e:  # the converter has no adapter for some op: import as it is
        log(f"prepare: opset {version} kept (onnx version converter: {type(e).__name__}: {e})")
        return model
    log(f"prepare: opset {version} -> {MIN_OPSET} (onnx version converter)")
    return out


def fix_input_shapes(model: onnx.ModelProto, chw: dict[str, tuple[int, int, int]], log: Log) -> onnx.ModelProto:
    """Write the YAML's C/H/W into the graph inputs so shape arithmetic can fold; the batch dim
    keeps a name (its static value, if any, stays in the graph's own Reshape constants)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in out.graph.input:
        if vi.name not in chw:
            continue
        dims = vi.type.tensor_type.shape.dim
        batch = (dims[0].dim_param if dims else "") or "N"
        del dims[:]
        dims.add().dim_param = batch
        for d in chw[vi.name]:
            dims.add().dim_value = int(d)
    del out.graph.value_info[:]  # stale shapes from the exporter would contradict the new ones
    log("prepare: input shapes " + ", ".join(f"{k} [N, {', '.join(map(str, v))}]" for k, v in chw.items()))
    return out


def simplify_graph(model: onnx.ModelProto, log: Log) -> onnx.ModelProto:
    """onnxsim on the fixed input shapes; a graph it cannot take is imported unsimplified (logged)."""
    from deploy.tvm_env import import_without_torch
    onnxsim = import_without_torch("onnxsim")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            out, _ = onnxsim.simplify(model)
    except Exception as e:
        log(f"prepare: onnxsim failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:300]}); "
            f"importing the graph unsimplified")
        return model
    # its inferred shapes name the batch "N" on every tensor; the importer would make each a new
    # symbolic variable unrelated to the input's, and kernels lose their static-shape fast paths
    del out.graph.value_info[:]
    log(f"prepare: onnxsim {onnxsim.__version__}: shape inference, constant folding, "
        f"Dropout/Identity elimination, Conv+BN fusion")
    return out
