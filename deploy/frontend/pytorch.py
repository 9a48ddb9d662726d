"""`frontend.type: pytorch`: a TorchScript file or a torch.export program → ONNX, inside the compile.

The file is loaded (`torch.jit.load`; `torch.export.load` for `.pt2`), traced once at the YAML's
`frontend.shape` (random example inputs) behind a wrapper that turns list outputs into a tuple of
graph outputs, and exported by torch's TorchScript-based ONNX exporter (`dynamo=False`, opset 17)
with the batch dim of every input and output named `N`. From there the build is an ONNX build:
the same graph preparation (deploy.compiler.prepare), fp16 range check, int8 calibration (on the
ONNX graph in onnxruntime), backend and suite; the ONNX is kept in the suite (`mod.source.onnx`).

Why ONNX and not TVM's own importer (`tvm.relax.frontend.torch.from_exported_program`), measured
on the five seed models (width 0.125, 64×64) and three small public-style nets (FCN with dilated
convs + BatchNorm + bilinear upsampling, a depthwise-separable MobileNet-style encoder with
Hardswish and a global-pool attention branch, an encoder-decoder with ConvTranspose), each saved
as TorchScript and as torch.export: both routes imported and built all 8 and agreed with each other
to ≤ 2e-6 (fp32); the ONNX route compiled in about the same time (conversion ~0.2-1.5 s, then the
ONNX compile) while from_exported_program took 3-5 s to import (numbers in the issue-18 report).
What decided it: only the ONNX route gives the rest of the pipeline its input — the int8
calibration and QDQ model, the fp16 overflow scan and onnxsim's folding all work on ONNX, and
the same graph reaches the same converters, so a PyTorch build and an ONNX build of one network
cannot drift apart; the direct route would also need TorchScript files re-exported by the user.
torch's dynamo exporter (`dynamo=True`, which takes an ExportedProgram) needs onnxscript, not a
dependency here; tracing `ExportedProgram.module()` with the TorchScript exporter gives the same
graph as the TorchScript file.

torch is optional (the `zoo` extra): it is imported only here, only when a pytorch YAML is
compiled or analyzed, after TVM (deploy.tvm_env masks torch only while TVM imports, so a later
`import torch` works; tests/test_frontend_torch.py checks it in a fresh process).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

from deploy.errors import ConfigError, DeployError

EXTRA = "pip install 'segdeploy[zoo]'"
OPSET = 17
BATCH = "N"


def import_torch():
    """torch, or a DeployError saying which extra installs it."""
    try:
        import torch
    except ImportError as e:
        raise DeployError(f"frontend.type: pytorch needs PyTorch, which is not installed: {EXTRA} "
                          f"(or export the model to ONNX and set frontend.type: onnx)") from e
    return torch


def to_onnx(path: Path, shapes: dict[str, tuple[int, ...]], *, where: str) -> tuple[bytes, dict]:
    """The ONNX bytes of the model in `path` with inputs named and shaped as `shapes` (NCHW, batch
    dynamic), and what mod.json records about the file (format, torch version)."""
    torch = import_torch()
    fn, fmt = _load(torch, path, where)
    example = _inputs(torch, shapes, 0)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's notices
        try:
            traced = torch.jit.trace(_flat(torch, fn), example, check_trace=False)
            outs = traced(*example)
            names = ["output"] if isinstance(outs, torch.Tensor) else [f"output_{i}" for i in range(len(outs))]
            torch.onnx.export(traced, example, buf, dynamo=False, opset_version=OPSET, input_names=list(shapes),
                              output_names=names, dynamic_axes={n: {0: BATCH} for n in [*shapes, *names]},
                              do_constant_folding=True)
        except Exception as e:  # noqa: BLE001 - the tracer and exporter raise many types
            raise DeployError(f"{path}: torch could not export the {fmt} model to ONNX at frontend.shape "
                              f"{ {k: list(v) for k, v in shapes.items()} } ({where}): {type(e).__name__}: {e}") from e
        _check_batch(torch, fn, buf.getvalue(), shapes, f"{path} ({fmt}, {where})")
    return buf.getvalue(), {"format": fmt, "torch": torch.__version__}


def _inputs(torch, shapes: dict[str, tuple[int, ...]], extra_batch: int) -> tuple:
    gen = torch.Generator().manual_seed(extra_batch)
    return tuple(torch.randn(s[0] + extra_batch, *s[1:], generator=gen) for s in shapes.values())


def _check_batch(torch, fn, data: bytes, shapes: dict[str, tuple[int, ...]], what: str) -> None:
    """Run the ONNX in onnxruntime at one more than the traced batch against the loaded model:
    tracing records a size that reaches an op as a Python int as a constant (a torch.export
    program's sizes beyond the ops _with_traced_sizes routes), and such a graph would run at other
    batches with wrong results, not an error. (A TorchScript file holds such constants already:
    the ONNX computes what the file does.)"""
    import numpy as np
    import onnxruntime as ort

    xs = _inputs(torch, shapes, 1)
    try:
        with torch.no_grad():
            want = [t.numpy() for t in _as_list(torch, fn(*xs))]
    except Exception as e:  # noqa: BLE001 - a torch.export program's guards reject the batch
        raise DeployError(f"{what}: the model does not run at batch {xs[0].shape[0]} ({type(e).__name__}: {e}); "
                          f"the compiled module takes any batch: save it for a dynamic batch (torch.export: "
                          f"dynamic_shapes with a torch.export.Dim on dim 0)") from e
    try:
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = sess.run(None, {k: x.numpy() for k, x in zip(shapes, xs)})
        worst = max(float(np.abs(g - w).max() / max(1.0, float(np.abs(w).max()))) for g, w in zip(got, want))
    except Exception as e:  # noqa: BLE001 - onnxruntime's shape errors
        worst, detail = float("inf"), f"{type(e).__name__}: {e}"
    else:
        detail = f"max relative difference {worst:.3g}"
    if not worst <= 1e-4:
        raise DeployError(f"{what}: the ONNX torch exported does not follow the batch (batch {xs[0].shape[0]} vs "
                          f"torch: {detail}): tracing made the example batch a constant; save the model as "
                          f"TorchScript (torch.jit.trace / torch.jit.script) instead")


def _load(torch, path: Path, where: str):
    """(callable model, format name); `.pt2` is a torch.export program, anything else TorchScript."""
    try:
        if path.suffix == ".pt2":
            return _with_traced_sizes(torch, torch.export.load(str(path)).module()), "torch.export"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript itself
            return torch.jit.load(str(path), map_location="cpu").eval(), "torchscript"
    except Exception as e:  # noqa: BLE001
        kind = "a torch.export program (torch.export.save)" if path.suffix == ".pt2" else \
            "a TorchScript file (torch.jit.trace or torch.jit.script, then .save); a state dict or a pickled " \
            "nn.Module (torch.save) holds no graph"
        raise ConfigError(f"{path}: not {kind} ({where}): {type(e).__name__}: {e}") from e


def _with_traced_sizes(torch, gm):
    """A torch.export program's module, run node by node so jit.trace records its sizes: the
    program reads the batch with `aten.sym_size` and passes Python ints to view/reshape/expand, which
    the tracer would bake in; here sizes come from Tensor.size and those ops run as Tensor methods
    (traced sizes). The guard module (input shape checks, done by _check_batch) is skipped."""
    aten = torch.ops.aten
    methods = {aten.view.default: "view", aten._unsafe_view.default: "view", aten.reshape.default: "reshape",
               aten.expand.default: "expand"}

    class Traceable(torch.fx.Interpreter):
        def call_function(self, target, args, kwargs):
            if target is aten.sym_size.int:
                return args[0].size(args[1])
            if target in methods and not kwargs:
                return getattr(args[0], methods[target])(*args[1])
            return super().call_function(target, args, kwargs)

        def call_module(self, target, args, kwargs):
            return None if target == "_guards_fn" else super().call_module(target, args, kwargs)

    class Program(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gm = gm

        def forward(self, *xs):
            return Traceable(self.gm).run(*xs)
    return Program()


def _as_list(torch, out) -> list:
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _flat(torch, fn):
    """`fn` as a module whose outputs are a tensor or a tuple of tensors (graph outputs): a list
    (deep supervision heads) would otherwise become one ONNX Sequence."""
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = fn

        def forward(self, *xs):
            out = self.inner(*xs)
            return tuple(out) if isinstance(out, (list, tuple)) else out
    return Flat()
