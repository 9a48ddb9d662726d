"""`frontend.type: pytorch`: a TorchScript file or a torch.export program → ONNX, inside the compile.

The file is loaded (`torch.jit.load`; `torch.export.load` for `.pt2`), run once at the YAML's
`frontend.shape` (random example inputs) to see what it returns, traced behind a wrapper that
returns the results to deploy as graph outputs (Outputs: a dict's "out", a tuple's tensors, or the
one `frontend.output` names), and exported by torch's TorchScript-based ONNX exporter (`dynamo=False`, opset 17)
with the batch dim of every input and output named `N`. From there the build is an ONNX build:
the same graph preparation (deploy.compiler.prepare), fp16 range check, int8 calibration (on the
ONNX graph in onnxruntime), backend and suite; the ONNX is kept in the suite (`mod.source.onnx`).

Why ONNX and not TVM's own importer (`tvm.relax.frontend.torch.from_exported_program`), measured
(issue 18) on the five seed models at width 0.125 and three small public-style nets (tests/
test_frontend_torch.py: an FCN with dilated convs, BatchNorm and bilinear upsampling; a depthwise-
separable encoder with Hardswish, ReLU6 and a global-pool attention branch; an encoder-decoder with
ConvTranspose and a list of two heads), 32×32, each saved as TorchScript and as torch.export, both
routes then through the same CPU backend: both compiled all 8; they agree to ≤ 6e-8 max abs (fp32,
batch 3) and the TorchScript and torch.export suites are identical. Time to a built module, on a
loaded 2-core machine: 4.7-115 s for TVM's route (its import alone 2.5-50 s; UNet 3+ with deep
supervision the slowest), 3.4-52 s for this one (conversion 1-27 s then, on two torch threads; one
thread, below, cut UNet 3+'s from 24-34 s to 7-9 s). Repeated on torchvision's FCN-ResNet50 and
LR-ASPP and a seed UNet++ (README, "Why through ONNX"): the same outcome.
What decided it: only the ONNX route gives the rest of the pipeline its input — the int8
calibration and QDQ model, the fp16 overflow scan and onnxsim's folding all work on ONNX, and
the same graph reaches the same converters, so a PyTorch build and an ONNX build of one network
cannot drift apart; the direct route would also need TorchScript files re-exported by the user.
torch's dynamo exporter (`dynamo=True`, which takes an ExportedProgram) needs onnxscript, not a
dependency here; a torch.export program is traced through its module with its batch sizes kept
symbolic (_with_traced_sizes) and gives the same graph as the TorchScript file; every converted
graph is checked against the model at a second batch (_check_batch) before it is compiled.

torch is optional (the `zoo` extra): it is imported only here, only when a pytorch YAML is
compiled or analyzed, after TVM (deploy.tvm_env masks torch only while TVM imports, so a later
`import torch` works; tests/test_frontend_torch.py checks it in a fresh process).
"""
from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
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


def to_onnx(path: Path, shapes: dict[str, tuple[int, ...]], *, yaml: Path,
            output: str | int | None = None) -> tuple[bytes, dict]:
    """The ONNX bytes of the model in `path` with inputs named and shaped as `shapes` (NCHW, batch
    dynamic) and outputs chosen by `output` (frontend.output, see `Outputs`), and what mod.json
    records about the file (format, torch version, which forward results became which outputs)."""
    torch = import_torch()
    where = f"frontend.checkpoint in {yaml}"
    fn, fmt = _load(torch, path, where)
    example = _inputs(torch, shapes, 0)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), _one_thread(torch):
        warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's notices
        outs = Outputs.of(torch, _run(fn, example, f"{path} ({fmt}, {where})"), output, yaml)
        try:
            flat = _flat(torch, fn, outs)
            traced = torch.jit.trace(flat, example, check_trace=False)
            torch.onnx.export(traced, example, buf, dynamo=False, opset_version=OPSET, input_names=list(shapes),
                              output_names=outs.names, dynamic_axes={n: {0: BATCH} for n in [*shapes, *outs.names]},
                              do_constant_folding=True)
        except Exception as e:  # noqa: BLE001 - the tracer and exporter raise many types
            raise DeployError(f"{path}: torch could not export the {fmt} model to ONNX at frontend.shape "
                              f"{ {k: list(v) for k, v in shapes.items()} } ({where}): {type(e).__name__}: {e}") from e
        _check_batch(torch, fn, buf.getvalue(), shapes, f"{path} ({fmt}, {where})", outs)
    return buf.getvalue(), {"format": fmt, "torch": torch.__version__, "returns": outs.returns,
                            "outputs": dict(zip(outs.names, outs.keys))}


@dataclass(frozen=True)
class Outputs:
    """Which results of the model's forward become graph outputs, and their ONNX names.

    A tensor is the one output `output`. A dict (torchvision's segmentation nets return
    {"out": …, "aux": …}; "aux" is a training head) deploys its "out" entry when it has one, else
    every tensor entry under its key; a tuple or list (deep supervision heads) every tensor, as
    `output_<i>`. `frontend.output` (a dict key, or an index into the dict's entries or the tuple,
    negative from the end) deploys that one result alone, as `output`. The first is mod.json's
    `main_output`."""
    returns: str                  # tensor, dict or tuple
    keys: list                    # per output: the dict key or tuple index (None: the tensor itself)
    names: list[str]

    @staticmethod
    def of(torch, out, output: str | int | None, yaml: Path) -> "Outputs":
        """The outputs of a forward that returned `out`; a bad `output` is a ConfigError naming the key."""
        def refuse(why: str) -> ConfigError:
            return ConfigError(f"{yaml}: frontend.output: {why}")
        if isinstance(out, torch.Tensor):
            if output is not None:
                raise refuse(f"{output!r}: the model returns one tensor; the key chooses among the results of a "
                             "model returning a dict or a tuple (remove it)")
            return Outputs("tensor", [None], ["output"])
        if isinstance(out, dict):
            returns, keys = "dict", list(out)
            default = ["out"] if isinstance(out.get("out"), torch.Tensor) else keys
        elif isinstance(out, (list, tuple)):
            returns, keys = "tuple", list(range(len(out)))
            default = keys
        else:
            raise DeployError(f"{yaml}: the model returns a {type(out).__name__}; segdeploy deploys a tensor, or "
                              "tensors in a dict, tuple or list")
        picked = [_pick(keys, output, returns, refuse)] if output is not None else \
            [k for k in default if isinstance(out[k], torch.Tensor)]
        for k in picked:
            if not isinstance(out[k], torch.Tensor):
                raise refuse(f"{k!r} is a {type(out[k]).__name__}, not a tensor")
        if not picked:
            raise DeployError(f"{yaml}: the model returns a {returns} without tensors ({out!r:.200})")
        if len(picked) == 1:
            return Outputs(returns, picked, ["output"])
        return Outputs(returns, picked, [str(k) if returns == "dict" else f"output_{k}" for k in picked])

    def select(self, out) -> list:
        """The deployed tensors of one forward's result."""
        return [out if k is None else out[k] for k in self.keys]


def _pick(keys: list, output: str | int, returns: str, refuse):
    """The dict key or tuple index `output` names among `keys`."""
    if isinstance(output, int):
        if not -len(keys) <= output < len(keys):
            raise refuse(f"index {output} is out of range: the model returns a {returns} of {len(keys)}"
                         + (f" ({', '.join(map(repr, keys))})" if returns == "dict" else ""))
        return keys[output]
    if returns != "dict" or output not in keys:
        accepted = ", ".join(map(repr, keys)) if returns == "dict" else f"an index 0..{len(keys) - 1}"
        raise refuse(f"{output!r} is not a result of the model: it returns a {returns}; accepted: {accepted}")
    return output


def _run(fn, xs: tuple, what: str):
    """The model's result on the example inputs (what Outputs reads), or a DeployError with torch's
    own reason (a TorchScript error's last line: the lines above are its interpreter's traceback)."""
    try:
        return fn(*xs)
    except Exception as e:  # noqa: BLE001 - a wrong frontend.shape fails in any layer
        last = ([line for line in str(e).splitlines() if line.strip()] or [""])[-1]
        reason = last if last.startswith(f"{type(e).__name__}: ") else f"{type(e).__name__}: {last}"
        raise DeployError(f"{what}: the model does not run at frontend.shape {[list(x.shape) for x in xs]}: "
                          f"{reason}") from e


@contextmanager
def _one_thread(torch):
    """torch on one thread while converting: tracing, exporting and checking run the model at the
    example batch only, and torch's OpenMP threads spin-waiting on each other made it 3-5x slower
    on a shared 2-core machine (UNet 3+ at width 0.125: 24-34 s on 2 threads, 7-9 s on 1)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _inputs(torch, shapes: dict[str, tuple[int, ...]], extra_batch: int) -> tuple:
    gen = torch.Generator().manual_seed(extra_batch)
    return tuple(torch.randn(s[0] + extra_batch, *s[1:], generator=gen) for s in shapes.values())


def _check_batch(torch, fn, data: bytes, shapes: dict[str, tuple[int, ...]], what: str, outs: Outputs) -> None:
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
            want = [t.numpy() for t in outs.select(fn(*xs))]
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


def _flat(torch, fn, outs: Outputs):
    """`fn` as a module whose result is the deployed tensor or a tuple of them (graph outputs): a
    list would otherwise become one ONNX Sequence, and the tracer does not take a dict."""
    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = fn

        def forward(self, *xs):
            picked = outs.select(self.inner(*xs))
            return picked[0] if len(picked) == 1 else tuple(picked)
    return Flat()
