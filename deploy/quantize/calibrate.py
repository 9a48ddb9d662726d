"""Calibration: the build YAML's dataset → preprocessed batches → |x| histograms of every conv's
input and output → one clipping threshold per tensor (deploy.quantize.thresholds)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from deploy.config.build import BuildConfig
from deploy.errors import ConfigError, DeployError
from deploy.host import check_memory
from deploy.quantize.graph import conv_nodes, single_input
from deploy.quantize.thresholds import find_threshold

BATCH = 8  # images per onnxruntime call when the model's batch dimension is symbolic


@dataclass(frozen=True)
class TensorRange:
    """Calibration result of one tensor: the clipping threshold and the raw min/max seen."""
    threshold: float
    min: float
    max: float

    @property
    def unsigned(self) -> bool:
        return self.min >= 0.0


def calibration_tensors(model: onnx.ModelProto) -> list[str]:
    """Input and output of every Conv/ConvTranspose with a constant 2-D weight, in graph order.

    Skip lists are not applied here, so one calibration serves any skip settings."""
    out: list[str] = []
    for c in conv_nodes(model):
        if c.is_2d:
            out += [c.input, c.output]
    return list(dict.fromkeys(out))


def settings_key(cfg: BuildConfig) -> dict:
    """The settings a calibration result depends on (besides the model and the images)."""
    q = cfg.backend.quantize
    key = {"calibrate_mode": q.calibrate_mode, "process_ops": repr(cfg.dataset.process_ops)}
    if q.calibrate_mode != "max":
        key["num_bins"] = q.num_bins
    if q.calibrate_mode == "percentile":
        key["percentile"] = q.percentile
    if q.calibrate_mode == "kl_divergence":
        key["num_quantized_bins"] = q.num_quantized_bins
    return key


def _yaml_key(cfg: BuildConfig, key: str) -> str:
    return f"{cfg.source}: dataset.{key}"


def calibration_images(cfg: BuildConfig) -> list[Path]:
    """The calibration set named by the YAML's dataset section (a seeded choice, sorted)."""
    from deploy.data.readers import select_calibration

    ds = cfg.dataset
    if ds.path is None:
        raise ConfigError(f"{_yaml_key(cfg, 'path')}: required for int8 (backend.dtype: int8): the folder of "
                          f"calibration images (e.g. dataset.path: /data/dsb2018_256_val/images)")
    if not Path(ds.path).is_dir():
        raise ConfigError(f"{_yaml_key(cfg, 'path')}: calibration image folder {ds.path} does not exist")
    try:
        return select_calibration(ds.path, ds.suffix, ds.get_data_num, ds.seed)
    except ConfigError:
        raise
    except DeployError as e:
        raise ConfigError(f"{_yaml_key(cfg, 'path')}: {e}") from e


def image_batches(images: list[Path], load, batch: int, fixed: bool) -> Iterator[tuple[np.ndarray, int]]:
    """`(x, n)`: float32 NCHW batches of the preprocessed images, the first `n` rows real; a model with
    a fixed batch size (`fixed`) gets its last batch padded with copies (callers leave them out)."""
    for start in range(0, len(images), batch):
        chunk = [load(p) for p in images[start:start + batch]]
        n = len(chunk)
        if fixed and n < batch:  # a fixed-batch model: pad with copies, left out of the statistics
            chunk += [chunk[-1]] * (batch - n)
        yield np.stack(chunk).astype(np.float32, copy=False), n


def check_dataset_shape(cfg: BuildConfig, model: onnx.ModelProto, sample: np.ndarray) -> tuple[str, list]:
    """(input name, dims) of the model's one input, once a preprocessed dataset image is known to fit
    it: every step that feeds dataset images to the model (calibration, the fp16 range check) fails
    here with the YAML key, not inside onnxruntime."""
    input_name, dims = single_input(model)
    if len(dims) != 4 or any(isinstance(d, int) and d > 0 and d != g for d, g in zip(dims[1:], sample.shape)):
        ops_key = "transform_ops" if cfg.schema == "legacy" else "process_ops"
        raise ConfigError(f"{_yaml_key(cfg, ops_key)}: dataset images preprocess to {sample.shape} "
                          f"(C, H, W) but the model input {input_name!r} is {dims}; add or fix the Resize op")
    return input_name, dims


def calibrate(cfg: BuildConfig, model: onnx.ModelProto, images: list[Path], tensors: list[str] | None = None,
              progress: bool = True) -> dict[str, TensorRange]:
    """Run the calibration set through `model` (onnxruntime) and search each tensor's threshold."""
    from deploy.preprocess import Preprocessor
    from deploy.quantize.collect import collect_histograms

    q = cfg.backend.quantize
    tensors = calibration_tensors(model) if tensors is None else tensors
    # one histogram per tensor (int64 counts) and the threshold search's float copies of it
    check_memory(len(tensors) * q.num_bins * 8 * 4, f"{cfg.source}: backend.quantize.num_bins {q.num_bins} "
                 f"({len(tensors)} tensors)", "use fewer bins (the default is 2048)")
    pre = Preprocessor.from_process_ops(cfg.dataset.process_ops)
    input_name, dims = check_dataset_shape(cfg, model, pre.load(images[0]))
    fixed = isinstance(dims[0], int) and dims[0] > 0
    batch = dims[0] if fixed else BATCH
    hists = collect_histograms(model, input_name, lambda: image_batches(images, pre.load, batch, fixed), tensors,
                               num_bins=q.num_bins, total=len(images), progress=progress)
    out = {}
    for name, sh in hists.items():
        h = sh.finalize()
        out[name] = TensorRange(float(find_threshold(h, q.calibrate_mode, q, unsigned=sh.min >= 0)),
                                float(sh.min), float(sh.max))
    return out
