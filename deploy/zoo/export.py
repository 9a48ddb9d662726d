"""PyTorch → ONNX for the zoo models (step 0 of the vendor workflow).

The legacy TorchScript exporter (`dynamo=False`) is used on purpose: in eval mode it folds
every BatchNorm into the preceding Conv (also for R2U-Net's shared convs), and fixed-factor
`F.interpolate` calls become one `Resize` with constant scales, so the graph holds only
Conv, Relu, MaxPool, Concat, Resize, Add, Sigmoid, ConvTranspose (+ constant initializers).
The batch dimension is symbolic (`N`).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from deploy import catalogue
from deploy.errors import DeployError
from deploy.io import atomic_write_bytes
from deploy.zoo import models as M

OPSET = 17
ALLOWED_OPS = frozenset({"Conv", "Relu", "MaxPool", "Concat", "Resize", "Add", "Sigmoid", "ConvTranspose",
                         "Constant", "Softmax"})  # Softmax: the head of a multi-class model (unet_lits)


def output_names(name: str) -> list[str]:
    if catalogue.MODELS[name].main_head is None:
        return ["output"]
    n = {"unetpp": 4, "unet3p_ds": 5}[name]
    return [f"output_{i}" for i in range(n)]


def main_output_name(name: str) -> str:
    k = catalogue.MODELS[name].main_head
    return "output" if k is None else f"output_{k}"


def load_model(name: str, weights: str | Path | None = None, width: float | None = None, seed: int = 0):
    """Build `name` and load `weights` (a zoo training checkpoint or a bare state dict).
    Without weights the network is initialised from `seed`. Returns (model in eval mode, width)."""
    M.check_name(name)
    state = None
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise DeployError(f"{weights}: weights file not found")
        try:
            ckpt = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
            raise DeployError(f"{weights}: not a readable PyTorch checkpoint: {e}") from e
        if isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt:
            cfg = ckpt["config"]
            if cfg.get("name") != name:
                raise DeployError(f"{weights}: checkpoint is for model {cfg.get('name')!r}, not {name!r}")
            if width is None:
                width = float(cfg.get("width", 1.0))
            elif float(width) != float(cfg.get("width", 1.0)):
                raise DeployError(f"{weights}: checkpoint was trained at width {cfg.get('width')}, not {width}")
            state = ckpt["model"]
        elif isinstance(ckpt, dict):
            state = ckpt.get("state_dict", ckpt)
        else:
            raise DeployError(f"{weights}: expected a state dict or a zoo checkpoint")
    width = 1.0 if width is None else float(width)
    torch.manual_seed(seed)
    model = M.create(name, width)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DeployError(f"{weights}: weights do not fit {name} at width {width}: {e}") from e
    return model.eval(), width


def export_onnx(name: str, out_path: str | Path, weights: str | Path | None = None, width: float | None = 1.0,
                batch: int = 1, seed: int = 0) -> Path:
    """Export `name` to ONNX at its INPUT_SIZE; input `input` (N,3,H,W) float32 with N symbolic
    (`batch` is the example batch used for tracing). Outputs `output`, or `output_0..k` for deep
    supervision with metadata `main_output` naming the prediction head. Written atomically."""
    out_path = Path(out_path)
    if weights is not None and width == 1.0:
        width = None  # take the checkpoint's own width
    model, width = load_model(name, weights, width, seed)
    size = catalogue.MODELS[name].size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    proto = trace(model, x, output_names(name))
    _tidy(proto, name, width)
    bad = sorted({n.op_type for n in proto.graph.node} - ALLOWED_OPS)
    if bad:
        raise DeployError(f"export of {name} produced unexpected ONNX ops {bad}")
    onnx.checker.check_model(proto)
    return atomic_write_bytes(out_path, proto.SerializeToString())


def trace(model: torch.nn.Module, x: torch.Tensor, outputs: list[str]) -> onnx.ModelProto:
    """`model` traced on `x` by the legacy exporter: opset 17, input `input`, symbolic batch `N`."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notices
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=outputs, dynamic_axes={n: {0: "N"} for n in ["input", *outputs]},
                          do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL)
    return onnx.load_from_string(buf.getvalue())


def set_metadata(proto: onnx.ModelProto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name = "segdeploy.zoo"


def _tidy(proto: onnx.ModelProto, name: str, width: float) -> None:
    """Constant nodes → initializers and Identity nodes (shared weights, R2U-Net) bypassed, so
    downstream passes see fewer node kinds; metadata; producer."""
    g = proto.graph
    graph_outputs = {o.name for o in g.output}
    alias = {}
    keep = []
    for node in g.node:
        if node.op_type == "Identity" and node.output[0] not in graph_outputs:
            alias[node.output[0]] = alias.get(node.input[0], node.input[0])
        elif node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    for node in keep:
        for i, inp in enumerate(node.input):
            if inp in alias:
                node.input[i] = alias[inp]
    del g.node[:]
    g.node.extend(keep)
    meta = {"model": name, "width": f"{width:g}", "input_size": str(catalogue.MODELS[name].size),
            "preprocess": catalogue.MODELS[name].preprocess, "main_output": main_output_name(name)}
    set_metadata(proto, meta)


def resize_modes(proto: onnx.ModelProto) -> set[tuple[str, str]]:
    """{(mode, coordinate_transformation_mode)} of every Resize in the graph (for tests/checks)."""
    modes = set()
    for node in proto.graph.node:
        if node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            dec = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
            modes.add((dec(attrs.get("mode", b"nearest")), dec(attrs.get("coordinate_transformation_mode",
                                                                          b"half_pixel"))))
    return modes


def torch_outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in M.as_list(model(torch.from_numpy(x)))]
