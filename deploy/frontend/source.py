"""`load_source(cfg)`: the build YAML's model as an ONNX graph, whatever `frontend.type` says.

The type is checked here, where the model is loaded, not when the YAML is read: commands that
never load the model (`deploy check-preprocess`) take a build file of any vendor frontend.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnx

from deploy.config.build import BuildConfig
from deploy.errors import ConfigError, UnsupportedError
from deploy.io import sha256_file

LOADED = ("onnx", "pytorch")
# vendor frontend types we do not load → how a user gets an ONNX file (then frontend.type: onnx)
ROUTES = {
    "tensorflow": ("tf2onnx: python -m tf2onnx.convert --saved-model DIR --output model.onnx "
                   "(or --graphdef/--checkpoint)"),
    "keras": "tf2onnx: python -m tf2onnx.convert --keras model.h5 --output model.onnx (tf2onnx.convert.from_keras)",
    "tflite": "tf2onnx: python -m tf2onnx.convert --tflite model.tflite --output model.onnx",
    "caffe": "caffe2onnx (python -m caffe2onnx.convert --prototxt X.prototxt --caffemodel X.caffemodel "
             "--onnx model.onnx), or MMdnn (mmconvert -sf caffe -df onnx)",
    "darknet": "load the .cfg/.weights in a PyTorch port of the network and save it with torch.jit.trace "
               "(then frontend.type: pytorch), or torch.onnx.export it",
    "mxnet": "mxnet.onnx.export_model(sym, params, in_shapes=[...], onnx_file_path='model.onnx')",
    "paddle": "paddle2onnx --model_dir DIR --model_filename model.pdmodel --params_filename model.pdiparams "
              "--save_file model.onnx",
    "huggingface": "optimum-cli export onnx --model MODEL_ID OUT_DIR (or save the PyTorch model with "
                   "torch.jit.trace / torch.export and use frontend.type: pytorch)",
}
ROUTES["tf"] = ROUTES["tensorflow"]
ROUTES["paddlepaddle"] = ROUTES["paddle"]
ROUTES["hf"] = ROUTES["huggingface"]
ROUTES["torch"] = "write frontend.type: pytorch"


@dataclass(frozen=True)
class Source:
    """The model to prepare, with what mod.json records about where it came from."""
    model: onnx.ModelProto
    records: dict[str, dict]           # mod.json `sources` entries: onnx (+ pytorch when converted)
    kept: tuple[str, bytes] | None     # a converted model's ONNX: (file name in the suite, bytes)

    def describe(self) -> str:
        m = self.model
        where = ", ".join(f"{k}: {r['path']} sha256 {r['sha256']}" for k, r in self.records.items())
        return (f"{where}, opset {[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}, "
                f"producer {m.producer_name} {m.producer_version}")


def load_source(cfg: BuildConfig) -> Source:
    """The checkpoint as ONNX: read (onnx), converted (pytorch), or an UnsupportedError naming
    the type and the way to ONNX."""
    kind = cfg.frontend.type.lower()
    path = cfg.frontend.checkpoint
    if kind == "onnx":
        if cfg.frontend.output is not None:
            raise ConfigError(f"{cfg.source}: frontend.output: {cfg.frontend.output!r}: chooses the result of a "
                              "PyTorch model's forward to deploy (frontend.type: pytorch); an ONNX graph's outputs "
                              "are the ones it was exported with (remove the key)")
        return Source(load_onnx(path, yaml=cfg.source), {"onnx": _record(path)}, None)
    if kind == "pytorch":
        from deploy.frontend import pytorch
        if not path.is_file():
            raise ConfigError(f"{path}: PyTorch file not found (frontend.checkpoint in {cfg.source})")
        data, info = pytorch.to_onnx(path, cfg.frontend.shape, yaml=cfg.source, output=cfg.frontend.output)
        kept = f"{cfg.prefix.name}.source.onnx"
        records = {"pytorch": {**_record(path), **info},
                   "onnx": {"path": str(cfg.artifact_dir / kept), "sha256": hashlib.sha256(data).hexdigest()}}
        return Source(_inline(onnx.load_from_string(data)), records, (kept, data))
    route = ROUTES.get(kind)
    hint = (f"convert it to ONNX first — {route} — and set frontend.type: onnx" if route else
            "convert the model to ONNX (or save a PyTorch model with torch.jit.trace / torch.export)")
    raise UnsupportedError(f"{cfg.source}: frontend.type: {cfg.frontend.type!r} is not loaded by segdeploy "
                           f"(accepted: {', '.join(LOADED)}); {hint}")


def _record(path: Path) -> dict:
    return {"path": str(path), "sha256": sha256_file(path)}


def load_onnx(path: Path, *, yaml: Path | None = None) -> onnx.ModelProto:
    """Read the checkpoint (external data included), inlining model-local functions.
    Missing or unparsable files raise ConfigError naming the path (and the YAML that points there)."""
    path = Path(path)
    where = f" (frontend.checkpoint in {yaml})" if yaml else ""
    if not path.is_file():
        raise ConfigError(f"{path}: ONNX file not found{where}")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError, missing external data, truncated file …
        raise ConfigError(f"{path}: not a readable ONNX model{where}: {type(e).__name__}: {e}") from e
    if not model.graph.node:
        raise ConfigError(f"{path}: the ONNX graph has no nodes{where}")
    return _inline(model)


def _inline(model: onnx.ModelProto) -> onnx.ModelProto:
    if model.functions:
        from onnx import inliner
        model = inliner.inline_local_functions(model)
    return model
