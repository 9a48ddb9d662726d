"""ONNX → Relax: load and validate the checkpoint against the build YAML, then import it.

Batch handling (recorded in `<prefix>.json` → "batch"):
- default: the batch dim is a symbolic `N` — one entry function `main` runs any batch;
- `backend.compile.batch_sizes: [1, 8]`: one entry function per size, `main_b1`, `main_b8`, in
  the same library (the symbolic import specialised per size, or, for graphs whose batch cannot
  be symbolic, one static import per size). The runtime picks the matching function, or
  chunks/pads (deploy.runtime.model).
- a graph whose batch cannot be symbolic (a batch baked into a Reshape, say) and no batch_sizes:
  the YAML's N is built as the one fixed size; "fixed_reason" in the entry says why.
Otherwise the YAML's N is ignored (vendor files always say 1); its C/H/W fix the spatial size,
and must agree with the ONNX input's static dims.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx

from deploy.config.build import BuildConfig
from deploy.errors import ConfigError, DeployError, UnsupportedError

if TYPE_CHECKING:
    import tvm

BATCH_VAR = "N"


@dataclass(frozen=True)
class OnnxTensor:
    """A graph input/output as the ONNX file declares it: dims are ints, names (symbolic) or None."""
    name: str
    dims: tuple[int | str | None, ...] | None  # None: unknown rank
    dtype: str

    def describe(self) -> str:
        if self.dims is None:
            return f"{self.name} [unknown rank] {self.dtype}"
        return f"{self.name} [{', '.join('?' if d is None else str(d) for d in self.dims)}] {self.dtype}"


def _tensor(vi: onnx.ValueInfoProto) -> OnnxTensor:
    t = vi.type.tensor_type
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
    except Exception:
        dtype = onnx.TensorProto.DataType.Name(t.elem_type).lower() if t.elem_type else "unknown"
    if not t.HasField("shape"):
        return OnnxTensor(vi.name, None, dtype)
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    return OnnxTensor(vi.name, dims, dtype)


def graph_inputs(model: onnx.ModelProto) -> list[OnnxTensor]:
    """The model's real inputs (graph inputs that are not initializers), in order."""
    inits = {i.name for i in model.graph.initializer}
    return [_tensor(vi) for vi in model.graph.input if vi.name not in inits]


def graph_outputs(model: onnx.ModelProto) -> list[OnnxTensor]:
    return [_tensor(vi) for vi in model.graph.output]


def check_inputs(cfg: BuildConfig, model: onnx.ModelProto) -> dict[str, tuple[int, int, int]]:
    """Match `frontend.shape` against the model's inputs; returns {name: (C, H, W)} in model order.
    A wrong name, a missing input or C/H/W that contradict static ONNX dims raise ConfigError."""
    real = graph_inputs(model)
    where = f"{cfg.source}: frontend.shape"
    listing = "; ".join(t.describe() for t in real)
    names = {t.name for t in real}
    unknown = [n for n in cfg.frontend.shape if n not in names]
    if unknown:
        verb = "is not an input" if len(unknown) == 1 else "are not inputs"
        raise ConfigError(f"{where}: {', '.join(map(repr, unknown))} {verb} "
                          f"of {cfg.frontend.checkpoint}; the model's inputs: {listing}")
    missing = [t.name for t in real if t.name not in cfg.frontend.shape]
    if missing:
        raise ConfigError(f"{where}: no shape for the model input(s) {', '.join(map(repr, missing))}; "
                          f"the model's inputs: {listing}")
    out = {}
    for t in real:
        n, c, h, w = cfg.frontend.shape[t.name]
        if not t.dtype.startswith("float"):
            raise UnsupportedError(f"{cfg.frontend.checkpoint}: input {t.describe()}: only float inputs are supported "
                                   f"(the runtime feeds preprocessed float32 NCHW)")
        if t.dims is not None:
            if len(t.dims) != 4:
                raise ConfigError(f"{where}.{t.name}: the model's input is not 4-D NCHW: {t.describe()}")
            clash = [f"{axis} {yaml_d} vs {onnx_d}" for axis, yaml_d, onnx_d in zip("CHW", (c, h, w), t.dims[1:])
                     if isinstance(onnx_d, int) and onnx_d > 0 and onnx_d != yaml_d]
            if clash:
                raise ConfigError(f"{where}.{t.name}: [{n}, {c}, {h}, {w}] does not fit the model's static input "
                                  f"{t.describe()} ({'; '.join(clash)}, YAML vs ONNX)")
        out[t.name] = (c, h, w)
    return out


def _shape_of(ty, batch_var) -> tuple[list, str]:
    dims = []
    for k, v in enumerate(ty.shape.values):
        if batch_var is not None and k == 0 and v.same_as(batch_var):
            dims.append(None)
        elif hasattr(v, "value"):
            dims.append(int(v.value))
        else:
            dims.append(str(v))
    return dims, str(ty.dtype)


def relax_signature(func, batch_var=None) -> tuple[list[tuple[list, str]], list[tuple[list, str]]]:
    """([(shape, dtype)] per param, [(shape, dtype)] per output); the batch var becomes None."""
    from tvm.ir.type import TupleType
    params = [_shape_of(p.ty, batch_var) for p in func.params]
    ret = func.ret_ty
    fields = list(ret.fields) if isinstance(ret, TupleType) else [ret]
    return params, [_shape_of(f, batch_var) for f in fields]


def _from_onnx(model: onnx.ModelProto, shape_dict: dict, log) -> "tvm.IRModule":
    from tvm.relax.frontend.onnx import from_onnx
    from deploy.compiler import converters
    with warnings.catch_warnings(record=True) as caught, converters.overrides():
        warnings.simplefilter("always")
        try:
            mod = from_onnx(model, shape_dict=shape_dict, dtype_dict="float32", keep_params_in_input=False)
        finally:
            for w in caught:
                log(f"onnx import warning: {w.message}")
    return converters.clip_as_min_max(mod)


def import_model(model: onnx.ModelProto, cfg: BuildConfig, chw: dict[str, tuple[int, int, int]],
                 log=lambda msg: None) -> tuple["tvm.IRModule", dict]:
    """Import to Relax. Returns (module, entry) where entry is {"symbolic": bool, "sizes": [...] | None,
    "functions": {"*": "main"} or {"<n>": "main_b<n>"}}; functions keep the graph's input order."""
    from deploy.tvm_env import import_tvm
    tvm = import_tvm()
    sizes = sorted(set(cfg.backend.batch_sizes)) if cfg.backend.batch_sizes else None
    n_var = tvm.tirx.Var(BATCH_VAR, "int64")
    path = cfg.frontend.checkpoint
    error = None
    try:
        mod = _from_onnx(model, {k: [n_var, *v] for k, v in chw.items()}, log)
        _, outs = relax_signature(mod["main"], n_var)
        baked = [k for k, (shape, _) in enumerate(outs) if shape and shape[0] is not None]
        if baked:
            error = (f"output(s) {', '.join(graph_outputs(model)[k].name for k in baked)} do not follow the input "
                     f"batch (batch baked into the graph)")
    except DeployError:
        raise
    except Exception as e:  # the frontend raises assorted errors for graphs it cannot take symbolically
        error = f"{type(e).__name__}: {e}"
    if error is None and sizes is None:
        return mod, {"symbolic": True, "sizes": None, "functions": {"*": "main"}}
    if error is None:
        out = tvm.IRModule()
        for b in sizes:
            out[f"main_b{b}"] = mod["main"].bind_symbolic_vars({BATCH_VAR: b}).with_attr("global_symbol", f"main_b{b}")
        return out, {"symbolic": False, "sizes": sizes, "functions": {str(b): f"main_b{b}" for b in sizes}}
    if sizes is None:  # the YAML's batch, built as the one fixed size (said in the log and mod.json)
        sizes = [max(shape[0] for shape in cfg.frontend.shape.values())]
        log(f"symbolic-batch import failed ({error}); building the YAML's batch {sizes[0]} as a fixed size "
            f"(list others in backend.compile.batch_sizes)")
    else:
        log(f"symbolic-batch import failed ({error}); importing one static graph per batch size")
    out = tvm.IRModule()
    for b in sizes:
        try:
            mod = _from_onnx(model, {k: [b, *v] for k, v in chw.items()}, log)
        except DeployError:
            raise
        except Exception as e:
            raise UnsupportedError(f"{path}: TVM's ONNX import failed for batch {b}: {type(e).__name__}: {e}") from e
        out[f"main_b{b}"] = mod["main"].with_attr("global_symbol", f"main_b{b}")
    return out, {"symbolic": False, "sizes": sizes, "functions": {str(b): f"main_b{b}" for b in sizes},
                 "fixed_reason": error}
