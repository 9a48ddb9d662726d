"""`make bench`, int8 part: UNet++ (or another seed model) at full width, batch 1 and 8, interleaved in one process:
onnxruntime fp32, onnxruntime int8 (its own quantize_static QDQ model with OUR calibration ranges:
deploy.quantize.qdq.ort_quantize_static, run by its int8 kernels) and our TVM int8 build.
Reports throughput ratios against the targets, calibration + compile seconds for the YAML's
calibration set (50 images), and output agreement on real (preprocessed) images: each int8
engine against the QDQ model (what both should compute) and against fp32."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from deploy.bench import models, report
from deploy.bench.engines import mask_agreement, max_abs, ort_engine, tvm_engine
from deploy.bench.flops import conv_flops
from deploy.bench.timing import SETTLE_S, interleaved, median_ms
from deploy.host import usable_cores
from deploy.tools.report import markdown_table

MODEL = "unetpp"
TARGETS = {"vs_ort_int8": 1.2, "vs_ort_fp32": 3.0}
CALIB_COMPILE_TARGET_S = 60.0


def _config(model: str, onnx_path: Path, work: Path):
    """The model's int8 build YAML on the bench workspace; a synthetic DSB2018 set stands in when
    the YAML's calibration folder is missing."""
    cfg = models.bench_config(model, onnx_path, work, "int8")
    if cfg.dataset.path is None or not Path(cfg.dataset.path).is_dir():
        from deploy.data.synth import synth_dsb2018
        images = synth_dsb2018(work / "data", n=max(cfg.dataset.get_data_num, 50)) / "images"
        cfg = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, path=images))
    return cfg


def _images(cfg, n: int) -> np.ndarray:
    """The first n images of the calibration folder, preprocessed as the YAML says (N, C, H, W)."""
    from deploy.data.readers import list_images
    from deploy.preprocess import Preprocessor
    pre = Preprocessor.from_process_ops(cfg.dataset.process_ops)
    paths = list_images(cfg.dataset.path, cfg.dataset.suffix)
    return np.stack([pre.load(paths[i % len(paths)]) for i in range(n)]).astype(np.float32)


def run(work: Path, batches=(1, 8), runs: int = 20, model: str = MODEL) -> dict:
    from deploy.compiler import compile_build
    from deploy.quantize import plan
    from deploy.quantize.qdq import ort_quantize_static
    from deploy.runtime.suite import read_meta

    onnx_path = models.bench_onnx(model, work)
    cfg = _config(model, onnx_path, work)
    t = time.perf_counter()
    prefix = compile_build(cfg, recalibrate=True, progress=False)       # calibration + compile from scratch
    total_s = time.perf_counter() - t
    proto = models.load(onnx_path)
    p = plan(cfg, proto, prefix.parent, progress=False)                 # the suite's calibration.json
    (work / "onnx").mkdir(parents=True, exist_ok=True)
    paths = {"ort_fp32": onnx_path, "tvm_int8": prefix, "qdq": prefix.parent / "mod.qdq.onnx",
             "ort_int8": ort_quantize_static(proto, p, work / "onnx" / f"{onnx_path.stem}-ort-int8.onnx")}
    result = {"machine": report.machine(), "threads": usable_cores(), "runs": runs, "model": model,
              "onnx": str(onnx_path),
              "conv_gop_per_image": conv_flops(proto) / 1e9, "targets": TARGETS,
              "calibration_images": p.num_images, "calibrate_mode": p.calibrate_mode,
              "quantized_convs": len(p.convs), "float_convs": len(p.skipped),
              "calibrate_compile_s": total_s, "calibrate_compile_target_s": CALIB_COMPILE_TARGET_S,
              "stages_s": read_meta(prefix)["compile"]["stages"]}
    result["batches"] = [_measure(paths, _images(cfg, b), runs, result["conv_gop_per_image"]) for b in batches]
    return result


def _measure(paths: dict, x: np.ndarray, runs: int, gop: float) -> dict:
    """One batch: output agreement, then interleaved median times (engines take turns, so load
    changes hit all alike) twice: with onnxruntime's default thread spinning and with it off (its
    own speed either way; timing.interleaved keeps one engine's spin off the next one's time)."""
    threads = usable_cores()
    timings = {}
    for mode, spin in (("ORT spinning", True), ("ORT spinning off", False)):
        engines = {"ort_fp32": ort_engine(paths["ort_fp32"], x, threads, spin),
                   "ort_int8": ort_engine(paths["ort_int8"], x, threads, spin),
                   "tvm_int8": tvm_engine(paths["tvm_int8"], x, threads)}
        timings[mode] = {k: median_ms(v) for k, v in interleaved(engines, runs).items()}
    outs = {k: fn() for k, fn in engines.items()}
    outs["qdq"] = ort_engine(paths["qdq"], x, threads)()
    checks = {k: {"vs_qdq_max_abs": max_abs(outs["qdq"], outs[k]),
                  "vs_qdq_mask_agreement": mask_agreement(outs["qdq"], outs[k]),
                  "vs_fp32_mask_agreement": mask_agreement(outs["ort_fp32"], outs[k])}
              for k in ("ort_int8", "tvm_int8")}
    speedup = {mode: {"vs_ort_fp32": ms["ort_fp32"] / ms["tvm_int8"], "vs_ort_int8": ms["ort_int8"] / ms["tvm_int8"]}
               for mode, ms in timings.items()}
    return {"batch": len(x), "median_ms": timings, "checks": checks, "tvm_int8_speedup": speedup,
            "tvm_int8_gops": {mode: gop * len(x) / (ms["tvm_int8"] / 1e3) for mode, ms in timings.items()}}


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f}× {'ok' if ratio >= target else 'below'}"


def markdown(result: dict) -> str:
    speed, acc = [], []
    for b in result["batches"]:
        for mode, ms in b["median_ms"].items():
            sp = b["tvm_int8_speedup"][mode]
            speed.append([b["batch"], mode, ms["ort_fp32"], ms["ort_int8"], ms["tvm_int8"],
                          _verdict(sp["vs_ort_fp32"], TARGETS["vs_ort_fp32"]),
                          _verdict(sp["vs_ort_int8"], TARGETS["vs_ort_int8"]), b["tvm_int8_gops"][mode]])
        c = b["checks"]
        acc.append([b["batch"], f"{100 * c['tvm_int8']['vs_qdq_mask_agreement']:.2f}%", c["tvm_int8"]["vs_qdq_max_abs"],
                    f"{100 * c['tvm_int8']['vs_fp32_mask_agreement']:.2f}%",
                    f"{100 * c['ort_int8']['vs_fp32_mask_agreement']:.2f}%", c["ort_int8"]["vs_qdq_max_abs"]])
    st = result["stages_s"]
    ok = "ok" if result["calibrate_compile_s"] <= result["calibrate_compile_target_s"] else "over"
    return (f"# int8 benchmark\n\n{result['model']} at full width ({result['conv_gop_per_image']:.2f} GOP of convs "
            f"per image), {result['machine']['cpu']}, {result['threads']} threads, medians of {result['runs']} runs "
            f"on preprocessed calibration-set images. ORT int8 = onnxruntime's quantize_static QDQ model with our "
            f"calibration ranges. Ratios are throughput (time of the other / ours); targets: "
            f"≥ {TARGETS['vs_ort_fp32']}× ORT fp32, ≥ {TARGETS['vs_ort_int8']}× ORT int8. Engines take turns "
            f"(interleaved, each timed call after a {1e3 * SETTLE_S:.0f} ms pause so no engine's spinning threads "
            f"slow down the next), once with onnxruntime's default thread spinning and once with it off.\n\n"
            + markdown_table(["batch", "onnxruntime threads", "ORT fp32 ms", "ORT int8 ms", "TVM int8 ms",
                            "TVM int8 vs ORT fp32", "TVM int8 vs ORT int8", "TVM int8 GOP/s"], speed)
            + "\n## Agreement (probability maps, masks at 0.5)\n\n"
            + markdown_table(["batch", "TVM masks = QDQ", "TVM max abs vs QDQ", "TVM masks = ORT fp32",
                            "ORT int8 masks = ORT fp32", "ORT int8 max abs vs QDQ"], acc)
            + f"\n{result['quantized_convs']} convs in int8, {result['float_convs']} in fp32; "
            f"{result['calibrate_mode']} calibration on {result['calibration_images']} images.\n\n"
            f"Calibration + compile: {result['calibrate_compile_s']:.1f} s ({ok}, target ≤ "
            f"{result['calibrate_compile_target_s']:.0f} s): calibrate {st.get('calibrate', 0):.1f} s, optimize "
            f"{st.get('optimize', 0):.1f} s, build {st.get('build', 0):.1f} s, export {st.get('export', 0):.1f} s.\n")
