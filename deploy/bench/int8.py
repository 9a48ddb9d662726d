"""`make bench`, int8 part: each seed model at full width, batch 1 and 8, interleaved in one process:
onnxruntime fp32, onnxruntime int8 (its own quantize_static QDQ model with OUR calibration ranges:
deploy.quantize.qdq.ort_quantize_static, run by its int8 kernels), OpenVINO int8 (our own
mod.qdq.onnx, when installed) and our TVM int8 build.
Reports throughput ratios against the targets, conv GOP/s against the measured VNNI peak,
calibration + compile seconds for the YAML's calibration set (50 images), and output agreement
on real (preprocessed) images: each int8 engine against the QDQ model (what both should compute)
and against fp32."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from deploy.bench import models, openvino, peak, report
from deploy.bench.engines import mask_agreement, max_abs, ort_engine, tvm_engine
from deploy.bench.flops import conv_flops
from deploy.bench.timing import SETTLE_S, interleaved, median_ms
from deploy.catalogue import DEPLOYABLE
from deploy.host import usable_cores
from deploy.tools.report import markdown_table

TARGETS = {"vs_ort_int8": 1.2, "vs_ort_fp32": 3.0, "vs_ov_int8": 1.1}
ENGINES = ("ort_fp32", "ort_int8", "ov_int8", "tvm_int8")
BASELINES = {"tvm_int8": ("ort_fp32", "ort_int8", "ov_int8")}
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


def images(cfg, n: int) -> np.ndarray:
    """The first n images of the calibration folder, preprocessed as the YAML says (N, C, H, W)."""
    from deploy.data.readers import list_images
    from deploy.preprocess import Preprocessor
    pre = Preprocessor.from_process_ops(cfg.dataset.process_ops)
    paths = list_images(cfg.dataset.path, cfg.dataset.suffix)
    return np.stack([pre.load(paths[i % len(paths)]) for i in range(n)]).astype(np.float32)


def run(work: Path, batches=(1, 8), runs: int = 20, names=DEPLOYABLE) -> dict:
    result = {"machine": report.machine(), "threads": usable_cores(), "runs": runs, "peak": peak.measure(),
              "targets": TARGETS, "calibrate_compile_target_s": CALIB_COMPILE_TARGET_S}
    result["models"] = [_model(work, name, batches, runs, result["peak"]) for name in names]
    return result


def _model(work: Path, model: str, batches, runs: int, peaks: dict) -> dict:
    onnx_path = models.bench_onnx(model, work)
    cfg = _config(model, onnx_path, work)
    entry, paths = build_suite(cfg, onnx_path, work)
    entry["batches"] = [measure_batch(paths, images(cfg, b), runs, entry["conv_gop_per_image"], peaks)
                        for b in batches]
    return {"model": model, **entry}


def build_suite(cfg, onnx_path: Path, work: Path) -> tuple[dict, dict[str, Path]]:
    """Calibrate and compile `cfg` from scratch (timed) and write onnxruntime's int8 model: the
    build's facts for the report and the paths of every engine's model."""
    from deploy.compiler import compile_build
    from deploy.quantize import plan
    from deploy.quantize.qdq import ort_quantize_static
    from deploy.runtime.suite import read_meta

    t = time.perf_counter()
    prefix = compile_build(cfg, recalibrate=True, progress=False)       # calibration + compile from scratch
    total_s = time.perf_counter() - t
    proto = models.load(onnx_path)
    p = plan(cfg, proto, prefix.parent, progress=False)                 # the suite's calibration.json
    (work / "onnx").mkdir(parents=True, exist_ok=True)
    paths = {"ort_fp32": onnx_path, "tvm_int8": prefix, "qdq": prefix.parent / "mod.qdq.onnx",
             "ort_int8": ort_quantize_static(proto, p, work / "onnx" / f"{onnx_path.stem}-ort-int8.onnx")}
    entry = {"onnx": str(onnx_path), "conv_gop_per_image": conv_flops(proto) / 1e9,
             "calibration_images": p.num_images, "calibrate_mode": p.calibrate_mode,
             "quantized_convs": len(p.convs), "float_convs": len(p.skipped), "calibrate_compile_s": total_s,
             "stages_s": read_meta(prefix)["compile"]["stages"]}
    return entry, paths


def _engines(paths: dict, x: np.ndarray, spin: bool) -> tuple[dict, str | None]:
    """The engines of one timing pass, and the precision OpenVINO chose for the int8 model's float
    parts (None without OpenVINO)."""
    threads = usable_cores()
    engines = {"ort_fp32": ort_engine(paths["ort_fp32"], x, threads, spin),
               "ort_int8": ort_engine(paths["ort_int8"], x, threads, spin)}
    chosen = None
    if openvino.available():
        engines["ov_int8"], chosen = openvino.ov_engine(paths["qdq"], x, threads)
    engines["tvm_int8"] = tvm_engine(paths["tvm_int8"], x, threads)
    return engines, chosen


def measure_batch(paths: dict, x: np.ndarray, runs: int, gop: float, peaks: dict) -> dict:
    """One batch: output agreement, then interleaved median times (engines take turns, so load
    changes hit all alike) twice: with onnxruntime's default thread spinning and with it off (its
    own speed either way; timing.interleaved keeps one engine's spin off the next one's time)."""
    timings = {}
    for mode, spin in (("ORT spinning", True), ("ORT spinning off", False)):
        engines, chosen = _engines(paths, x, spin)
        timings[mode] = {k: median_ms(v) for k, v in interleaved(engines, runs).items()}
    outs = {k: fn() for k, fn in engines.items()}
    outs["qdq"] = ort_engine(paths["qdq"], x, usable_cores())()
    checks = {k: {"vs_qdq_max_abs": max_abs(outs["qdq"], outs[k]),
                  "vs_qdq_mask_agreement": mask_agreement(outs["qdq"], outs[k]),
                  "vs_fp32_mask_agreement": mask_agreement(outs["ort_fp32"], outs[k])}
              for k in engines if k != "ort_fp32"}
    precisions = {"ort_fp32": "fp32", "ort_int8": "int8", "ov_int8": "int8", "tvm_int8": "int8"}
    return {"batch": len(x), "median_ms": timings, "checks": checks, "ov_int8_float_precision": chosen,
            "speedup": {mode: report.ratios(ms, BASELINES)["tvm_int8"] for mode, ms in timings.items()},
            "conv_throughput": {mode: report.conv_throughput(ms, gop, len(x), precisions, peaks)
                                for mode, ms in timings.items()}}


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f}× {'ok' if ratio >= target else 'below'}"


def markdown(result: dict) -> str:
    speed, conv, acc, notes = [], [], [], []
    for m in result["models"]:
        for b in m["batches"]:
            for mode, ms in b["median_ms"].items():
                sp, key = b["speedup"][mode], [m["model"], b["batch"], mode]
                speed.append(key + [ms.get(k, "—") for k in ENGINES]
                             + [_verdict(sp["ort_fp32"], TARGETS["vs_ort_fp32"]),
                                _verdict(sp["ort_int8"], TARGETS["vs_ort_int8"]),
                                _verdict(sp["ov_int8"], TARGETS["vs_ov_int8"]) if "ov_int8" in sp else "—"])
                conv.append(key + [report.throughput_cell(t) for t in b["conv_throughput"][mode].values()])
            acc.append([m["model"], b["batch"]] + [x for k in ENGINES[1:] for x in _agreement(b["checks"].get(k))])
        notes.append(_calibration_note(m, result["calibrate_compile_target_s"]))
    engines = list(result["models"][0]["batches"][0]["conv_throughput"]["ORT spinning"])
    return (f"# int8 benchmark\n\n{result['machine']['cpu']}, {result['threads']} threads, medians of "
            f"{result['runs']} runs on preprocessed calibration-set images. ORT int8 = onnxruntime's quantize_static "
            f"QDQ model with our calibration ranges. {report.openvino_note(result['machine']['openvino'])} "
            f"Ratios are throughput (time of the other / ours); targets: ≥ {TARGETS['vs_ort_fp32']}× ORT fp32, "
            f"≥ {TARGETS['vs_ort_int8']}× ORT int8, ≥ {TARGETS['vs_ov_int8']}× OV int8. Engines take turns "
            f"(interleaved, each timed call after a {1e3 * SETTLE_S:.0f} ms pause so no engine's spinning threads "
            f"slow down the next, in an order that changes every round), once with onnxruntime's default thread "
            f"spinning and once with it off.\n\n"
            + markdown_table(["model", "batch", "onnxruntime threads"] + [f"{report.LABELS[k]} ms" for k in ENGINES]
                             + ["TVM int8 vs ORT fp32", "TVM int8 vs ORT int8", "TVM int8 vs OV int8"], speed)
            + "\n## Conv layers: effective GOP/s and % of the measured peak of the precision\n\n"
            f"{peak.summary(result['peak'])} Effective = conv operations / whole-model time (float convs and the "
            "rest of the model only lower it).\n\n"
            + markdown_table(["model", "batch", "onnxruntime threads"] + [report.LABELS[k] for k in engines], conv)
            + "\n## Agreement (probability maps, masks at 0.5)\n\n"
            + markdown_table(["model", "batch"] + [x for k in ENGINES[1:] for x in (
                f"{report.LABELS[k]} masks = QDQ", f"{report.LABELS[k]} max abs vs QDQ",
                f"{report.LABELS[k]} masks = ORT fp32")], acc)
            + "\n" + "\n\n".join(notes) + "\n")


def _agreement(check: dict | None) -> list:
    if check is None:
        return ["—"] * 3
    return [f"{100 * check['vs_qdq_mask_agreement']:.2f}%", check["vs_qdq_max_abs"],
            f"{100 * check['vs_fp32_mask_agreement']:.2f}%"]


def _calibration_note(m: dict, target_s: float) -> str:
    st = m["stages_s"]
    ok = "ok" if m["calibrate_compile_s"] <= target_s else "over"
    return (f"{m['model']} ({m['conv_gop_per_image']:.2f} GOP of convs per image): {m['quantized_convs']} convs "
            f"in int8, {m['float_convs']} in fp32; {m['calibrate_mode']} calibration on {m['calibration_images']} "
            f"images. Calibration + compile: {m['calibrate_compile_s']:.1f} s ({ok}, target ≤ {target_s:.0f} s): "
            f"calibrate {st.get('calibrate', 0):.1f} s, optimize {st.get('optimize', 0):.1f} s, build "
            f"{st.get('build', 0):.1f} s, export {st.get('export', 0):.1f} s.")
