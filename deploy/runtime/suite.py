"""A compiled model suite on disk, and the one schema of its description `<prefix>.json` (mod.json):
version, fields, writer and reader.

Why here, in the runtime: the compiler writes the description and the runtime reads it. The compiler
already imports the runtime (it runs every new suite through it to verify it) and the runtime never
imports the compiler (a deployment needs no compiler), so the only place both may import without an
upward import is the runtime. This module imports nothing heavy: the standard library, deploy.errors,
deploy.io (digests) and deploy.config.ops (the typed preprocessing ops of the `preprocess` field).

Layout (`cfg.artifact_dir`, `<workspace>/<name>/` for the current YAML schema; how it is written
atomically: deploy.compiler.artifact):

    <name>/
      mod.so        TVM library: Relax VM bytecode + kernels, weights bound inside as constants
      mod.json      description (below); the runtime needs both files, found by the prefix .../mod
      compile.log   what the compile did: target, stages and timings, warnings, kernel schedules
      int8 only:
      mod.qdq.onnx      the "ideal" int8 model with the chosen scales (QDQ), runnable in onnxruntime
      calibration.json  thresholds + hashes; reused by a rebuild with the same ONNX and images
      frontend.type pytorch only:
      mod.source.onnx   the ONNX torch's exporter made of the checkpoint (what was prepared and compiled)

`mod.json` (schema_version 1), made by `description(...)`:
    schema_version, name, library ("mod.so"), library_sha256 (SHA-256 of mod.so: `check_library`
        compares it before the library is loaded, since loading a shared library runs its code),
    inputs / outputs: [{name, shape, dtype}] — shape NCHW with null for the batch when it is not
        fixed; dtype is what Model.run takes/returns (float32); inputs also have layout (NCHW);
    main_output: the prediction head (ONNX metadata `main_output`, else the first output);
    batch: {symbolic, sizes, functions} — functions maps "*" (any N) or each size to its VM entry;
    batch_sizes: null or the compiled sizes;
    dtype: backend dtype (fp32 | fp16 | int8);
    target (TVM JSON target), device (cpu | cuda), target_features (CPU features the code may use),
    tvm: {version, ffi_version}; pipeline: which optimisation path ran;
    sources: {onnx, build_yaml: {path, sha256}, calibration: {files, sha256}} (calibration empty
        — 0 files, sha256 null — unless int8); a pytorch build adds pytorch: {path, sha256, format
        (torchscript | torch.export), torch (version)} and its onnx is the kept mod.source.onnx;
    preprocess: cfg.dataset.process_ops as [{type, **fields}] (process_ops_to_json);
  added by later compile stages:
    fp16_overflow (fp16 only, when the dataset was read): [{node, tensor, max_abs}] of the layers
        beyond fp16's range (deploy.compiler.fp16_range);
    quantization (int8 only): the plan's summary (mode, quantized and skipped convs with reasons);
    device_code (cuda only: how kernels are carried and what checked them);
    compile: {seconds, finished_at (UTC ISO), stages {name: seconds}, host}.
A reader accepts any schema_version up to SCHEMA_VERSION; bump it on incompatible changes.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from deploy.config import ops as ops_mod
from deploy.errors import DeployError
from deploy.io import non_utf8, sha256_file

SCHEMA_VERSION = 1
FLOAT_NCHW = {"dtype": "float32", "layout": "NCHW"}   # what Model.run takes


class ArtifactError(DeployError):
    """A compiled model suite is missing, incomplete, from a newer schema or cannot run here."""


ANALYSIS_SUFFIX = ".analysis"


def analysis_dir(suite_dir: str | Path) -> Path:
    """Where `deploy analyze` writes about a suite by default: `<suite>.analysis` beside it, never
    inside (only the compiler writes there); `deploy report` looks for it there too."""
    suite_dir = Path(suite_dir)
    return suite_dir.with_name(suite_dir.name + ANALYSIS_SUFFIX)


def artifact_paths(prefix: str | Path) -> tuple[Path, Path]:
    """(`<prefix>.so`, `<prefix>.json`): the suffix is appended, never substituted."""
    prefix = Path(prefix)
    return prefix.with_name(prefix.name + ".so"), prefix.with_name(prefix.name + ".json")


def existing_paths(prefix: str | Path) -> tuple[Path, Path]:
    """`artifact_paths`, or ArtifactError naming the files that are missing."""
    problem = non_utf8(prefix)
    if problem:  # TVM's loader takes UTF-8 paths; this would fail inside it
        raise ArtifactError(f"model prefix {problem}; move or rename the suite's folder")
    paths = artifact_paths(prefix)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ArtifactError(_missing_message(Path(prefix), missing))
    return paths


def _missing_message(prefix: Path, missing: list[Path]) -> str:
    names = " and ".join(str(p) for p in missing)
    msg = f"model prefix {prefix}: {names} not found (a model is loaded as <prefix>.so + <prefix>.json)"
    if prefix.is_dir():
        found = sorted(p.with_suffix("") for p in prefix.glob("*.json") if p.with_suffix(".so").is_file())
        if found:
            msg += f"; {prefix} is a folder: did you mean {found[0]}?"
    return msg


# ---- write ----------------------------------------------------------------------------------

def description(prefix: Path, *, name: str, library_sha256: str, inputs: Sequence[tuple[str, list]],
                outputs: Sequence[tuple[str, list]],
                main_output: str, batch: dict, dtype: str, target: dict, device: str, target_features: list[str],
                tvm: dict, pipeline: str, sources: dict, preprocess: list[dict]) -> dict:
    """A new description (the fields above, in their order); inputs/outputs as (name, shape)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "library": artifact_paths(prefix)[0].name,
        "library_sha256": library_sha256,
        "inputs": [{"name": n, "shape": shape, **FLOAT_NCHW} for n, shape in inputs],
        "outputs": [{"name": n, "shape": shape, "dtype": FLOAT_NCHW["dtype"]} for n, shape in outputs],
        "main_output": main_output,
        "batch": batch,
        "batch_sizes": batch["sizes"],
        "dtype": dtype,
        "target": target,
        "device": device,
        "target_features": target_features,
        "tvm": tvm,
        "pipeline": pipeline,
        "sources": sources,
        "preprocess": preprocess,
    }


def dumps(data: Any) -> str:
    """Indented JSON with lists of scalars (shapes, features, mean/std) kept on one line."""
    text = json.dumps(data, indent=2)

    def inline(m: re.Match) -> str:
        items = [line.strip().rstrip(",") for line in m.group(1).strip().splitlines()]
        return "[" + ", ".join(items) + "]"
    return re.sub(r"\[((?:\s*(?:-?[\d.eE+-]+|null|true|false|\"[^\"\n]*\"),?)+\s*)\]", inline, text)


def write_meta(prefix: str | Path, meta: dict) -> None:
    """Write `<prefix>.json` (as it stands: a compile rewrites it when a later stage adds fields)."""
    artifact_paths(prefix)[1].write_text(dumps(meta) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def process_ops_to_json(ops: Iterable[Any]) -> list[dict]:
    """Typed process ops → [{"type": <class name>, **fields}] (tuples as lists)."""
    return [{"type": type(op).__name__, **{f.name: _plain(getattr(op, f.name)) for f in dataclasses.fields(op)}}
            for op in ops]


# ---- read -----------------------------------------------------------------------------------

def read_meta(prefix: str | Path) -> dict:
    """The parsed `<prefix>.json`, checked for a schema this runtime understands."""
    _, meta_path = artifact_paths(prefix)
    if not meta_path.is_file():
        raise ArtifactError(_missing_message(Path(prefix), [meta_path]))
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{meta_path}: not a readable model description: {e}") from e
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise ArtifactError(f"{meta_path}: no schema_version: not written by `deploy compile`")
    if version > SCHEMA_VERSION:
        raise ArtifactError(f"{meta_path}: schema_version {version} is newer than this runtime's "
                            f"({SCHEMA_VERSION}); update segdeploy or recompile the model")
    return meta


def check_library(so_path: Path, meta: dict) -> None:
    """Refuse a library whose bytes are not the ones its description records: a truncated copy (which
    dies with SIGBUS inside the loader), another build's library, or one planted beside the mod.json.
    This is an integrity check, not a security boundary: whoever can write the suite can rewrite
    both files; a suite is executable code, so load only suites you trust."""
    recorded = meta.get("library_sha256")
    if not isinstance(recorded, str):
        raise ArtifactError(f"{so_path}: its description records no SHA-256 of the library (compiled by an "
                            "older segdeploy), so it cannot be checked before loading: recompile")
    actual = sha256_file(so_path)
    if actual != recorded:
        raise ArtifactError(f"{so_path}: SHA-256 {actual} differs from the {recorded} its description "
                            "records: the library is truncated, replaced or from another build; not loaded. "
                            "Copy the suite whole, or recompile")


def process_ops_from_json(items: Iterable[dict]) -> tuple:
    """Inverse of process_ops_to_json."""
    out = []
    for item in items:
        item = dict(item)
        cls = getattr(ops_mod, item.pop("type"))
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}
        out.append(cls(**kwargs))
    return tuple(out)
