"""Pieces the tools share: loading a compiled model for a segmentation run, picking its prediction
output, and the vendor-compatible option spellings."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import click

from deploy.errors import DeployError
from deploy.io import read_text


MAX_WORKERS = 256
# --workers of every tool: threads, each with its buffers; past a few hundred only memory and contention grow
# (100000 would start as many threads as the images allow and fail deep inside Python)
WORKERS = click.IntRange(1, MAX_WORKERS)


class FiniteFloat(click.ParamType):
    """A float option that refuses nan and inf (click's FLOAT takes them: `--threshold nan` would make
    every pixel background, silently)."""
    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def check_finite(name: str, value: float) -> float:
    """The API side of FiniteFloat: `name` for the message."""
    if not math.isfinite(value):
        raise DeployError(f"{name} {value!r}: must be a finite number")
    return value


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """Refuse, before any long work, an output file path that cannot be written: a folder, or one
    whose nearest existing parent is not a writable folder (the file is not created here)."""
    path = Path(path)
    if path.is_dir():
        raise DeployError(f"{flag} {path}: is a folder; give a file path")
    parent = path.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DeployError(f"{flag} {path}: cannot be written ({parent} is not a writable folder); "
                          "choose another path")


def load_model(prefix: str | os.PathLike, num_threads: int | None = None) -> Any:
    """The compiled model at `prefix` (`<prefix>.so` + `<prefix>.json`), as deploy.runtime loads it."""
    from deploy.runtime import Model
    return Model(str(Path(prefix)), num_threads=num_threads)


def main_output_index(meta: dict) -> int:
    """The index of a model description's `main_output` (a name or an index) among its outputs; 0 when
    it names none."""
    names = [o.get("name") for o in meta.get("outputs") or []]
    main = meta.get("main_output")
    if isinstance(main, int):
        return main
    return names.index(main) if main in names else 0


def output_index(model: Any, requested: int | None) -> int:
    """Which model output is the prediction: `requested`, else the artifact's `main_output`."""
    names = [o.name for o in model.outputs]
    if requested is None:
        requested = main_output_index(getattr(model, "meta", None) or {})
    if not 0 <= requested < len(names):
        raise DeployError(f"--output-index {requested}: the model has {len(names)} output(s): {', '.join(names)}")
    return requested


def vdsp_preprocessor(vdsp_params: str | os.PathLike) -> tuple[Any, Any]:
    """(VdspConfig, Preprocessor); `pre.from_rgb(hwc)` preprocesses a decoded RGB image (or the vendor's
    planar input after planar_to_hwc) in the op's input order."""
    from deploy.config.vdsp import load_vdsp_config
    from deploy.preprocess import Preprocessor
    cfg = load_vdsp_config(vdsp_params)
    return cfg, Preprocessor.from_vdsp(cfg)


def check_outside(out_dir: str | os.PathLike, flag: str, **inputs) -> None:
    """Refuse to write outputs into an input folder (`<stem>.png` would overwrite a source image)."""
    out = Path(out_dir).resolve()
    for name, folder in inputs.items():
        if folder is not None and Path(folder).resolve() == out:
            raise DeployError(f"{flag} {out_dir} is the {name} folder: outputs would overwrite inputs; "
                              "choose another folder")


def check_image_model(model: Any, out_size: tuple[int, int] | None, what: str) -> None:
    """The model takes one NCHW 3-channel image whose H, W match what the preprocessing produces."""
    if len(model.inputs) != 1:
        raise DeployError(f"{what}: expected a model with one image input, it has {len(model.inputs)}: "
                          + ", ".join(i.name for i in model.inputs))
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] != 3:
        raise DeployError(f"{what}: expected an NCHW input with 3 channels, the model's input "
                          f"{model.inputs[0].name!r} is {list(shape)}")
    if out_size is not None and all(isinstance(d, int) for d in shape[2:]) and tuple(shape[2:]) != tuple(out_size):
        raise DeployError(f"{what}: the preprocessing produces {out_size[0]}x{out_size[1]} but the model input "
                          f"{model.inputs[0].name!r} is {shape[2]}x{shape[3]} (check OimageHeight/OimageWidth)")


def warn_device(device: str | int | None) -> None:
    """The vendor's device id: this runtime runs on the host (the compiled target); any id is accepted."""
    if device not in (None, 0, "0", "[0]"):
        click.echo(f"note: device {device}: models run on the host the artifact was compiled for; "
                   "the device id is accepted for compatibility and otherwise ignored", err=True)


def read_datalist(path: str | os.PathLike) -> list[Path]:
    """One npz path per line (blank lines skipped); a relative path is taken from the current folder
    when it exists there, else from the datalist's folder."""
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"datalist {path} not found")
    out = []
    for line in read_text(path, "datalist").splitlines():
        line = line.strip()
        if line:
            p = Path(line)
            out.append(p if p.is_absolute() or p.exists() else path.parent / p)
    if not out:
        raise DeployError(f"datalist {path} lists no files")
    return out
