"""Per quantized conv: how far its output is from fp32, *accumulated* (the int8 model all the way
from the input: what arrives there) and *isolated* (only this conv quantized, fed fp32 inputs: how
sensitive the layer itself is). One pass over the images runs two onnxruntime sessions
(deploy.analysis.graphs) and scores the prediction of both models end to end as well.

Where the accumulated error enters: a conv's `acc_fall` is how many dB the accumulated SQNR loses
from the nearest quantized convs upstream (the worst of them) to this conv's output. A conv with
no quantized conv upstream sees exact fp32 inputs, so its accumulated and isolated numbers are the
same measurement and it has no fall (None): the isolated ranking covers it.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import onnx
from tqdm import tqdm

from deploy.analysis import graphs
from deploy.analysis.errors import Errors, finite
from deploy.analysis.samples import Samples
from deploy.analysis.score import EndToEnd
from deploy.quantize.planner import QuantPlan
from deploy.quantize.qdq import named_copy

MIN_FALL_DB = 1.0  # a smaller fall of the accumulated SQNR is not flagged (onnxruntime's own rounding moves it)
MIN_GAP_DB = 3.0   # an isolated SQNR this far below the median conv's is flagged


@dataclass
class Layer:
    node: str
    op_type: str
    input_dtype: str            # uint8 / int8 activation
    threshold: float
    scale: float
    upstream: tuple[str, ...]   # the nearest quantized convs whose outputs reach this conv's input
    accumulated: Errors = field(default_factory=Errors)
    isolated: Errors = field(default_factory=Errors)
    acc_fall: float | None = None

    def to_dict(self) -> dict:
        return {"node": self.node, "op_type": self.op_type, "input_dtype": self.input_dtype,
                "threshold": self.threshold, "scale": self.scale, "upstream": list(self.upstream),
                "accumulated": self.accumulated.to_dict(), "isolated": self.isolated.to_dict(),
                "acc_fall_db": finite(self.acc_fall)}


@dataclass
class Measured:
    layers: list[Layer]                 # graph order
    fp32: EndToEnd
    int8: EndToEnd
    output: str                         # the prediction output the end-to-end numbers are of
    reference: list[np.ndarray]         # its fp32 values, one array per batch (the search reuses them)


def upstream_convs(model: onnx.ModelProto, plan: QuantPlan) -> dict[str, tuple[str, ...]]:
    """For each quantized conv, the quantized convs met first walking its input back through the graph."""
    m = named_copy(model)
    producer = {o: n for n in m.graph.node for o in n.output}
    quantized_out = {c.output: name for name, c in plan.convs.items()}
    out = {}
    for name, c in plan.convs.items():
        found, seen, todo = [], set(), [c.input]
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            if t in quantized_out:
                found.append(quantized_out[t])
            elif t in producer:
                todo += [i for i in producer[t].input if i]
        out[name] = tuple(n for n in plan.convs if n in found)
    return out


def _falls(layers: list[Layer]) -> None:
    acc = {L.node: L.accumulated.sqnr for L in layers}
    for L in layers:
        ups = [acc[u] for u in L.upstream]
        if ups and math.isfinite(min(ups)) and math.isfinite(acc[L.node]):
            L.acc_fall = min(ups) - acc[L.node]


def measure(model: onnx.ModelProto, plan: QuantPlan, samples: Samples, progress: bool = True) -> Measured:
    """Run the images through the fp32 reference and the int8 model and score every quantized conv."""
    ref_model, iso = graphs.reference(model, plan)
    s_ref = graphs.session(ref_model, "fp32 reference (with isolated int8 convs)")
    s_q = graphs.session(graphs.quantized(model, plan), "int8 (QDQ)")
    out = graphs.main_output(model)
    convs = list(plan.convs.values())
    ref_names = list(dict.fromkeys([out] + [c.output for c in convs] + list(iso.values())))
    q_names = list(dict.fromkeys([out] + [c.output for c in convs]))
    ups = upstream_convs(model, plan)
    layers = [Layer(c.node, c.op_type, plan.activations[c.input].dtype, plan.activations[c.input].threshold,
                    plan.activations[c.input].scale, ups[c.node]) for c in convs]
    fp32, int8, reference = EndToEnd(), EndToEnd(), []
    with tqdm(total=len(samples.images), desc="analysis (fp32, int8)", unit="img", disable=not progress,
              leave=False, file=sys.stderr) as bar:
        for x, n, start in samples.batches():
            r = dict(zip(ref_names, s_ref.run(ref_names, {samples.input_name: x})))
            q = dict(zip(q_names, s_q.run(q_names, {samples.input_name: x})))
            for L, c in zip(layers, convs):
                L.accumulated.add(q[c.output][:n], r[c.output][:n])
                L.isolated.add(r[iso[c.node]][:n], r[c.output][:n])
            fp32.add(samples, start, r[out][:n], r[out][:n])
            int8.add(samples, start, q[out][:n], r[out][:n])
            reference.append(r[out][:n])
            bar.update(n)
    _falls(layers)
    return Measured(layers, fp32, int8, out, reference)


def worst(layers: list[Layer], k: int) -> dict[str, list[str]]:
    """The convs that stand out, at most k per mode: the most sensitive (isolated SQNR MIN_GAP_DB or
    more below the median conv's) and those where the accumulated SQNR falls most (MIN_FALL_DB or more)."""
    if not layers:
        return {"isolated": [], "accumulated": []}
    median = float(np.median([min(L.isolated.sqnr, 1e9) for L in layers]))
    iso = sorted((L for L in layers if L.isolated.sqnr <= median - MIN_GAP_DB), key=lambda L: (L.isolated.sqnr, L.node))
    falls = sorted((L for L in layers if L.acc_fall is not None and L.acc_fall >= MIN_FALL_DB),
                   key=lambda L: -L.acc_fall)
    return {"isolated": [L.node for L in iso[:k]], "accumulated": [L.node for L in falls[:k]]}


def sensitivity_order(layers: list[Layer]) -> list[str]:
    """The convs from most to least sensitive (isolated SQNR, lowest first): the search's order."""
    return [L.node for L in sorted(layers, key=lambda L: (L.isolated.sqnr, L.node))]
