"""Build YAML → BuildConfig, for both vendor schemas (current `frontend/backend` and legacy
2023 `model/engine`). Parsed and validated once, here; the core only sees typed values."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from deploy.config.ops import Op, parse_process_ops
from deploy.config.reader import Node, load_document
from deploy.errors import ConfigError
from deploy.io import non_utf8

DTYPES = ("fp32", "fp16", "int8")
CALIBRATE_MODES = ("kl_divergence", "percentile", "max", "mse")
BACKENDS = ("tvm_vacc", "vacc", "tvm")


@dataclass(frozen=True)
class Frontend:
    type: str  # any vendor type: checked where the model is loaded (deploy.frontend), not here
    checkpoint: Path
    shape: dict[str, tuple[int, ...]]  # input name → NCHW as written in the YAML
    dtype: str = "fp32"
    output: str | int | None = None  # pytorch: the dict key or tuple index to deploy (None: deploy.frontend.pytorch)


@dataclass(frozen=True)
class Quantize:
    calibrate_mode: str = "kl_divergence"
    quantize_per_channel: bool = True
    skip_conv_layers: tuple[int, ...] = ()  # vendor: indices of Conv nodes in graph order
    skip_nodes: tuple[str, ...] = ()        # ours: node names or regular expressions
    skip_op_types: tuple[str, ...] = ()     # ours: ONNX op types kept in float
    skip_dtype: str = "fp32"                # what skipped layers run in
    percentile: float = 99.99
    num_bins: int = 2048
    num_quantized_bins: int = 128
    weight_scale: str = "max"               # or the vendor's power2


@dataclass(frozen=True)
class Backend:
    type: str
    dtype: str
    quantize: Quantize = field(default_factory=Quantize)
    target: dict | None = None               # a TVM JSON target; None = detect the host
    batch_sizes: tuple[int, ...] | None = None  # None = one module for any batch (symbolic N)
    simplify: bool = True                    # graph preparation before import (deploy.compiler.prepare)


@dataclass(frozen=True)
class Dataset:
    path: Path | None
    suffix: str = "png"
    get_data_num: int = 50
    process_ops: tuple[Op, ...] = ()
    seed: int = 0
    type: str = "tvm"


@dataclass(frozen=True)
class BuildConfig:
    name: str
    frontend: Frontend
    backend: Backend
    dataset: Dataset
    workspace: Path
    source: Path
    schema: str = "current"  # or "legacy"

    @property
    def artifact_dir(self) -> Path:
        if self.schema == "legacy":
            c, h, w = next(iter(self.frontend.shape.values()))[1:4]
            calib = self.backend.quantize.calibrate_mode if self.backend.dtype == "int8" else "none"
            return self.workspace / f"{self.name}-{self.backend.dtype}-{calib}-{c}_{h}_{w}-vacc"
        return self.workspace / self.name

    @property
    def prefix(self) -> Path:
        """What the runtime loads (`<prefix>.so` + `<prefix>.json`), as the vendor runtime does."""
        return self.artifact_dir / (self.name if self.schema == "legacy" else "mod")

    def with_dtype(self, dtype: str) -> "BuildConfig":
        """Override the YAML's dtype; a current-schema name's `_fp32/_fp16/_int8` suffix follows,
        so an fp16 build of `official_unetpp_int8` does not overwrite the int8 suite."""
        if dtype not in DTYPES:
            raise ConfigError(f"{self.source}: backend.dtype: unsupported value {dtype!r}; "
                              f"accepted: {', '.join(DTYPES)}")
        if dtype == self.backend.dtype:
            return self
        name = self.name
        if self.schema == "current":
            name = re.sub(r"_(fp32|fp16|int8)$", "", name) + f"_{dtype}"
        return replace(self, name=name, backend=replace(self.backend, dtype=dtype))


def load_build_config(path: str | Path) -> BuildConfig:
    """Load either schema; the legacy one is recognised by its `model`/`engine` sections."""
    root = load_document(path, "build file", "YAML", yaml.safe_load, yaml.YAMLError)
    cfg = _legacy(root) if root.has("engine") or root.has("model") else _current(root)
    _check_utf8_paths(cfg)
    _check_batch_sizes(cfg)
    return cfg


INDEX_LIMIT = 2**31  # TVM indexes a tensor with 32-bit integers: a batch that makes more values cannot build


def _check_batch_sizes(cfg: BuildConfig) -> None:
    """A batch size whose input alone holds 2**31 values or more fails deep inside TVM's passes
    (an int32 overflow) after the import; refused here with the key. The run cuts any batch into the
    compiled sizes, so a smaller size loses nothing."""
    key = ("engine.common" if cfg.schema == "legacy" else "backend.compile") + ".batch_sizes"
    for size in cfg.backend.batch_sizes or ():
        for name, shape in cfg.frontend.shape.items():
            values = size * math.prod(shape[1:])
            if values >= INDEX_LIMIT:
                raise ConfigError(f"{cfg.source}: {key}: batch {size} of input {name!r} {list(shape[1:])} makes "
                                  f"{values} values, more than the 2**31 TVM's 32-bit indexing holds; use smaller "
                                  "batch sizes (a run cuts any batch into them)")


def _check_utf8_paths(cfg: BuildConfig) -> None:
    """TVM writes and loads the suite by UTF-8 paths: a workspace or model path that is not UTF-8
    (a folder named in Latin-1, say) is refused now, naming it, not after the whole build."""
    legacy = cfg.schema == "legacy"
    for key, path in (("workspace." + ("work_dir" if legacy else "path"), cfg.artifact_dir),
                      (("model" if legacy else "frontend") + ".checkpoint", cfg.frontend.checkpoint)):
        problem = non_utf8(path)
        if problem:
            raise ConfigError(f"{cfg.source}: {key}: {problem}; rename the folder or choose another one")


def _shape(n: Node, key: str) -> dict[str, tuple[int, ...]]:
    shapes = n.child(key)
    out = {}
    for name in shapes.data:
        dims = shapes.ints(name)
        if len(dims) != 4 or min(dims) <= 0:
            raise shapes.error(f"expected a positive [N, C, H, W], got {list(dims)}", name)
        out[str(name)] = dims
    if not out:
        raise n.error("at least one input shape is required", key)
    return out


def _quantize(n: Node | None) -> Quantize:
    if n is None:
        return Quantize()
    known = ("calibrate_mode", "quantize_per_channel", "skip_conv_layers", "skip_nodes", "skip_op_types",
             "skip_dtype", "percentile", "num_bins", "num_quantized_bins", "weight_scale")
    n.warn_unknown(known)
    if n.data.get("skip_dtype") == "bf16":
        raise n.error("bf16 is not implemented yet (no bf16 build exists); accepted: fp32, fp16", "skip_dtype")
    q = Quantize(
        calibrate_mode=n.get("calibrate_mode", str, "kl_divergence", CALIBRATE_MODES),
        quantize_per_channel=n.get("quantize_per_channel", bool, True),
        skip_conv_layers=n.ints("skip_conv_layers", default=()),
        skip_nodes=tuple(_strings(n, "skip_nodes")),
        skip_op_types=tuple(_strings(n, "skip_op_types")),
        skip_dtype=n.get("skip_dtype", str, "fp32", ("fp32", "fp16")),
        percentile=n.get("percentile", float, 99.99),
        num_bins=n.get("num_bins", int, 2048),
        num_quantized_bins=n.get("num_quantized_bins", int, 128),
        weight_scale=n.get("weight_scale", str, "max", ("max", "power2")),
    )
    if not 0 < q.percentile <= 100:
        raise n.error(f"must be in (0, 100], got {q.percentile}", "percentile")
    if q.num_quantized_bins < 2 or q.num_bins < q.num_quantized_bins:
        raise n.error("need 2 <= num_quantized_bins <= num_bins", "num_bins")
    for pattern in q.skip_nodes:
        try:
            re.compile(pattern)
        except re.error as e:
            raise n.error(f"not a valid regular expression {pattern!r}: {e}", "skip_nodes") from e
    return q


def _strings(n: Node, key: str) -> list[str]:
    values = n.get(key, list, [])
    if not all(isinstance(v, str) for v in values):
        raise n.error(f"expected a list of strings, got {values!r}", key)
    return values


def _compile_options(n: Node | None) -> dict:
    """Our compile options; vendor device-only keys (data_transport_mode, …) warn and are ignored."""
    if n is None:
        return {}
    n.warn_unknown(("target", "batch_sizes", "simplify"))
    target = n.get("target", (dict, str), None)
    if isinstance(target, str):
        target = {"kind": "llvm", "mcpu": target} if target not in ("cuda", "llvm") else {"kind": target}
    batch_sizes = n.ints("batch_sizes", default=None)
    if batch_sizes is not None and (not batch_sizes or min(batch_sizes) <= 0):
        raise n.error(f"expected positive batch sizes, got {batch_sizes!r}", "batch_sizes")
    return {"target": target, "batch_sizes": batch_sizes, "simplify": n.get("simplify", bool, True)}


def _dataset(n: Node | None, ops_key: str) -> Dataset:
    if n is None:
        return Dataset(path=None)
    n.warn_unknown(("type", "path", "sampler", ops_key, "seed"))
    sampler = n.child("sampler", required=False)
    suffix, num = "png", 50
    if sampler is not None:
        sampler.warn_unknown(("suffix", "get_data_num"))
        suffix = sampler.get("suffix", str, "png").lstrip(".")
        num = sampler.get("get_data_num", int, 50)
        if num <= 0:
            raise sampler.error(f"must be positive, got {num}", "get_data_num")
    return Dataset(path=n.path_value("path", None), suffix=suffix, get_data_num=num,
                   process_ops=parse_process_ops(n, ops_key), seed=n.get("seed", int, 0),
                   type=n.get("type", str, "tvm"))


def _current(root: Node) -> BuildConfig:
    root.warn_unknown(("name", "frontend", "backend", "dataset", "workspace"))
    fe = root.child("frontend")
    fe.warn_unknown(("type", "checkpoint", "shape", "dtype", "language", "output"))
    be = root.child("backend")
    be.warn_unknown(("type", "dtype", "compile", "quantize"))
    ws = root.child("workspace", required=False)
    if ws is not None:
        ws.warn_unknown(("path", "enable_ir", "save_log"))
    options = _compile_options(be.child("compile", required=False))
    return BuildConfig(
        name=_name(root, "name"),
        frontend=Frontend(type=fe.get("type", str), checkpoint=fe.path_value("checkpoint"),
                          shape=_shape(fe, "shape"), dtype=fe.get("dtype", str, "fp32", ("fp32",)),
                          output=fe.get("output", (str, int), None)),
        backend=Backend(type=be.get("type", str, "tvm_vacc", BACKENDS), dtype=be.get("dtype", str, choices=DTYPES),
                        quantize=_quantize(be.child("quantize", required=False)), **options),
        dataset=_dataset(root.child("dataset", required=False), "process_ops"),
        workspace=ws.path_value("path", root.file.parent / "workspace") if ws else root.file.parent / "workspace",
        source=root.file,
    )


def _legacy(root: Node) -> BuildConfig:
    root.warn_unknown(("model", "engine", "dataset", "workspace"))
    model = root.child("model")
    model.warn_unknown(("name", "inputs", "checkpoint"))
    eng = root.child("engine")
    eng.warn_unknown(("type", "dtype", "common", "calibration", "add_extra_ops_to_graph"))
    ws = root.child("workspace", required=False)
    if ws is not None:
        ws.warn_unknown(("work_dir", "enable_ir", "save_log"))
    options = _compile_options(eng.child("common", required=False))
    return BuildConfig(
        name=_name(model, "name"),
        frontend=Frontend(type="onnx", checkpoint=model.path_value("checkpoint"), shape=_shape(model, "inputs")),
        backend=Backend(type=eng.get("type", str, "vacc", BACKENDS), dtype=eng.get("dtype", str, choices=DTYPES),
                        quantize=_quantize(eng.child("calibration", required=False)), **options),
        dataset=_dataset(root.child("dataset", required=False), "transform_ops"),
        workspace=ws.path_value("work_dir", root.file.parent / "workspace") if ws else root.file.parent / "workspace",
        source=root.file,
        schema="legacy",
    )


def _name(n: Node, key: str) -> str:
    """The suite's folder name inside the workspace. A leading dot is refused: `.` and `..` are the
    workspace and its parent (a compile swaps the folder it names for the suite, so it would replace
    the whole workspace), and dot names are the compiler's own temporaries and locks (`.<name>.tmp-*`)."""
    name = n.get(key, str)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise n.error(f"must be a plain folder name (letters, digits, _ . -), got {name!r}", key)
    if name.startswith("."):
        raise n.error(f"must not start with a dot, got {name!r}: '.' and '..' are the workspace and its "
                      "parent, and dot names are the compiler's temporary folders", key)
    return name
