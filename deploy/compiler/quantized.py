"""The int8 build's inputs and by-products: calibration plan, QDQ model, files beside the module.

`check_target(cfg, target)` refuses, before any calibration, a target without AVX-512 VNNI. `prepare(cfg, model, recalibrate, progress)` runs deploy.quantize.plan
(or reuses the suite's calibration.json) and makes the QDQ model (deploy.quantize.qdq.to_qdq) that
the compiler imports and deploy.compiler.qdq_to_integer turns into integer convs. `Quantized.record()` is
mod.json's `sources.calibration`: the image count and the plan's digest of the calibration set
(deploy.io.sha256_files, the same one calibration.json is keyed by). `Quantized.write(folder)` puts into the suite:
    mod.qdq.onnx       the QDQ model with the chosen scales (inspectable; onnxruntime runs it as
                       the reference of what the int8 module computes)
    calibration.json   the calibration cache: a rebuild with the same model, images and settings
                       reuses it (`--recalibrate` forces a new calibration)
The suite's calibration.json is only read here: calibration writes into a private temporary
folder, and the file reaches the suite with the rest of it (deploy.compiler.artifact.staging).
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from deploy.config.build import BuildConfig
from deploy.errors import UnsupportedError
from deploy.quantize import QuantPlan, plan
from deploy.quantize.cache import CACHE_FILE
from deploy.quantize.qdq import to_qdq

QDQ_SUFFIX = ".qdq.onnx"
VNNI = "avx512vnni"


@dataclass
class Quantized:
    plan: QuantPlan
    qdq: onnx.ModelProto
    cache: bytes            # calibration.json as used (reused or freshly written)

    def record(self) -> dict:
        """mod.json `sources.calibration`: the calibration list's size and digest."""
        return {"files": self.plan.num_images, "sha256": self.plan.images_sha256}

    def summary(self, prefix_name: str) -> dict:
        """mod.json `quantization`: the plan (modes, quantized/skipped convs, activation scales)."""
        return {"qdq_onnx": prefix_name + QDQ_SUFFIX, "calibration_cache": CACHE_FILE, **self.plan.to_dict()}

    def write(self, folder: Path, prefix_name: str) -> None:
        onnx.save(self.qdq, str(folder / (prefix_name + QDQ_SUFFIX)))
        (folder / CACHE_FILE).write_bytes(self.cache)


def check_target(cfg: BuildConfig, target) -> None:
    """int8 runs on llvm CPU targets with AVX-512 VNNI (u8 x s8 dot products); say so before calibrating."""
    from deploy.compiler.backend.cpu.target import has_features
    where = f"{cfg.source}: backend.dtype int8"
    if target.kind.name != "llvm":
        raise UnsupportedError(f"{where}: int8 is implemented for CPU (llvm) targets only, not {target.kind.name}; "
                               f"build fp16 or fp32 for this target")
    if not has_features(target, VNNI):
        mcpu = target.attrs.get("mcpu", "generic")
        raise UnsupportedError(f"{where}: the target CPU {mcpu!r} has no AVX-512 VNNI ({VNNI}), which the int8 "
                               f"convolutions use; pick a target with it (e.g. mcpu cascadelake, icelake-server, "
                               f"sapphirerapids, znver4) or build fp16/fp32")


def prepare(cfg: BuildConfig, model: onnx.ModelProto, recalibrate: bool = False, progress: bool = False) -> Quantized:
    """Calibrate (or reuse `<artifact_dir>/calibration.json`) and make the QDQ model."""
    with tempfile.TemporaryDirectory(prefix="segdeploy-calib-") as tmp:
        cached = cfg.artifact_dir / CACHE_FILE
        if cached.is_file() and not recalibrate:
            shutil.copyfile(cached, Path(tmp) / CACHE_FILE)
        p = plan(cfg, model, Path(tmp), recalibrate, progress=progress)
        cache = (Path(tmp) / CACHE_FILE).read_bytes()
    qdq = to_qdq(model, p)
    onnx.checker.check_model(qdq)
    return Quantized(p, qdq, cache)
