"""The ONNX models an analysis runs in onnxruntime, all made by deploy.quantize.qdq.to_qdq, the QDQ
writer whose model the int8 build imports — so every number describes the arithmetic of the module
a compile ships:

- `reference(model, plan)`: the fp32 graph plus, beside every quantized conv, a copy of it that
  alone is quantized (input QuantizeLinear/DequantizeLinear, int8 weights) and is fed the fp32
  input: one run gives each conv's fp32 output and its *isolated* int8 output;
- `quantized(model, plan, keep)`: the int8 model of the plan with the convs of `keep` in float (fp32,
  or fp16-rounded with skip_dtype fp16, as the build runs them), the *accumulated* int8 outputs
  (int8 all the way from the input).
Conv outputs are exposed as graph outputs (deploy.quantize.collect.with_outputs).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import onnx
from onnx import helper

from deploy.errors import DeployError
from deploy.quantize.collect import with_outputs
from deploy.quantize.planner import ConvQuant, QuantPlan
from deploy.quantize.qdq import named_copy, to_qdq

KEPT = "kept in float by deploy analyze"
ISOLATED = "/isolated"  # suffix of the quantized copies' node and output names


def keep_fp32(plan: QuantPlan, keep: Iterable[str]) -> QuantPlan:
    """The plan with the convs of `keep` in fp32 (what `skip_nodes` naming them makes the planner do)."""
    keep = set(keep)
    unknown = keep - set(plan.convs)
    if unknown:
        raise DeployError(f"not quantized convs of this plan: {sorted(unknown)}")
    return replace(plan, convs={n: c for n, c in plan.convs.items() if n not in keep},
                   skipped={**plan.skipped, **{n: KEPT for n in plan.convs if n in keep}})


def main_output(model: onnx.ModelProto) -> str:
    """The prediction output: the model's `main_output` metadata (deep-supervision nets) or the first."""
    names = [o.name for o in model.graph.output]
    meta = {p.key: p.value for p in model.metadata_props}
    return meta["main_output"] if meta.get("main_output") in names else names[0]


def quantized(model: onnx.ModelProto, plan: QuantPlan, keep: Iterable[str] = (),
              expose: bool = True) -> onnx.ModelProto:
    """The plan's QDQ model, `keep` in float; `expose`: every quantized conv's output is a graph output.
    With skip_dtype fp16 the float convs take fp16-rounded inputs and weights (fp16_rounded)."""
    p = keep_fp32(plan, keep)
    m = to_qdq(model, p)
    if p.skip_dtype == "fp16":
        m = fp16_rounded(m, p.skipped)
    return with_outputs(m, [c.output for c in plan.convs.values()]) if expose else m


def fp16_rounded(model: onnx.ModelProto, nodes: Iterable[str]) -> onnx.ModelProto:
    """`nodes` (convs) fed their input and weight through Cast to float16 and back: the int8 build with
    skip_dtype fp16 (deploy.compiler.skipped_fp16) stores both in fp16 and, on CPUs without
    AVX512-FP16, accumulates in fp32 — exactly this; with AVX512-FP16 it accumulates in fp16, which
    this does not model."""
    nodes = set(nodes)
    taken = {t for n in model.graph.node for t in (*n.input, *n.output, n.name)}
    out = []
    for node in model.graph.node:
        if node.name in nodes:
            for k in (0, 1):
                half, back = _fresh(f"{node.input[k]}_fp16", taken), _fresh(f"{node.input[k]}_fp16_fp32", taken)
                out += [helper.make_node("Cast", [node.input[k]], [half], name=half, to=onnx.TensorProto.FLOAT16),
                        helper.make_node("Cast", [half], [back], name=back, to=onnx.TensorProto.FLOAT)]
                node.input[k] = back
        out.append(node)
    del model.graph.node[:]
    model.graph.node.extend(out)
    return model


def reference(model: onnx.ModelProto, plan: QuantPlan) -> tuple[onnx.ModelProto, dict[str, str]]:
    """(the fp32 model with each quantized conv's output and its isolated copy's output exposed,
    {conv node: isolated output name})."""
    m = named_copy(model)  # the plan's names for unnamed nodes come from their position: fix them first
    taken = {t for n in m.graph.node for t in (*n.output, n.name)}
    nodes, copies, isolated = [], {}, {}
    for node in m.graph.node:
        nodes.append(node)
        cq = plan.convs.get(node.name)
        if cq is None:
            continue
        name, out = _fresh(node.name + ISOLATED, taken), _fresh(cq.output + ISOLATED, taken)
        copy = helper.make_node(node.op_type, list(node.input), [out], name=name, domain=node.domain)
        copy.attribute.extend(node.attribute)
        nodes.append(copy)
        copies[name] = ConvQuant(name, cq.op_type, cq.input, out, cq.weight, cq.weight_scale, cq.weight_axis)
        isolated[node.name] = out
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    q = to_qdq(m, replace(plan, convs=copies))
    tensors = [c.output for c in plan.convs.values()] + list(isolated.values())
    return with_outputs(q, tensors), isolated


def _fresh(name: str, taken: set[str]) -> str:
    out, k = name, 1
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def session(model: onnx.ModelProto, what: str):
    """An onnxruntime CPU session of `model`; a model it refuses is a DeployError naming `what`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise DeployError(f"onnxruntime cannot load the {what} model: {e}") from e
