"""`make accuracy`: the accuracy table in the vendor's format — each seed model trained on its
synthetic set, compiled fp32/fp16/int8-KL, scored with the UNET-ZOO metric on a held-out set
(a fresh synthetic set, seed 1; training uses seed 0) through the real `deploy run` pipeline.

Targets (drop from fp32, in mIoU points): int8-KL ≤ 0.3 and fp16 ≤ 0.05 on every model; the
vendor's int8 drops were 1.11, 0.03, 0.93, 0.59. Training runs in a child process (`deploy zoo
prepare`) so torch never shares a process with TVM. The CT models (unet3p_liver, unet_lits) are
scored on the axial slices of held-out synthetic volumes, and their LiTS volume Dice is listed under
the table. `--models a,b` measures those and merges their rows into the existing report (same width).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import onnx

from deploy.bench import report
from deploy.bench.flops import conv_flops
from deploy.catalogue import DEPLOYABLE, MODELS
from deploy.config import load_build_config
from deploy.data.sets import SetDirs, synthetic_set
from deploy.errors import UnsupportedError
from deploy.tools.report import markdown_table

DTYPES = ("fp32", "fp16", "int8")
VENDOR = {"unetpp": (84.164, 83.179, 83.052), "r2u_net": (77.443, 77.421, 77.417),
          "unet3p": (80.284, 79.324, 79.357), "unet3p_ds": (71.411, 71.103, 70.823)}
TARGET_DROP = {"fp16": 0.05, "int8": 0.3}
# Training for the table: longer than the embedded-default budgets (deploy.zoo.prepare.PREPARE,
# ~10 min each), sized so the whole table trains in about 1.5 h on 2 Zen 4 cores with bf16 autocast
# (s/step: UNet++ 0.93, UNet 0.33, R2U-Net 3.9 at batch 8; UNet 3+ 7.8 at batch 8). UNet 3+ gets
# lr 3e-4 / batch 8: at width 0.25 with horizontal flips only (deploy.zoo.train.AUGMENT) it reached
# 80.8 held-out IoU in 150 steps.
TABLE = {"unetpp": {"steps": 600}, "unet": {"steps": 1000}, "r2u_net": {"steps": 200},
         "unet3p": {"steps": 200, "batch": 8, "lr": 3e-4}, "unet3p_ds": {"steps": 200, "batch": 8, "lr": 3e-4},
         "unet3p_liver": {"steps": 200, "batch": 8, "lr": 3e-4}, "unet_lits": {"steps": 560}}


def train(name: str, work: Path, width: float, steps: int | None, train_images: int) -> tuple[Path, SetDirs, dict]:
    data = synthetic_set(MODELS[name].dataset, work / "data", train_images, seed=0)
    cmd = [sys.executable, "-m", "deploy", "zoo", "prepare", name, "--out-dir", str(work / "zoo"),
           "--data-dir", str(work / "data"), "--width", str(width)]
    budget = {**TABLE.get(name, {}), **({} if steps is None else {"steps": steps})}
    subprocess.run(cmd + [a for k, v in budget.items() for a in (f"--{k}", str(v))], check=True)
    onnx_path = work / "zoo" / MODELS[name].onnx_name
    return onnx_path, data, json.loads(onnx_path.with_suffix(".json").read_text())


def evaluate(name: str, onnx_path: Path, calib: SetDirs, held_out: SetDirs, work: Path) -> dict:
    from deploy.compiler import compile_build
    from deploy.tools.run import run
    base = load_build_config(MODELS[name].build_yaml)
    base = replace(base, frontend=replace(base.frontend, checkpoint=onnx_path), workspace=work / "deploy_weights",
                   dataset=replace(base.dataset, path=calib.images))
    out = {}
    for dt in DTYPES:
        t = time.perf_counter()
        try:
            prefix = compile_build(base.with_dtype(dt), progress=False)
        except UnsupportedError as e:  # e.g. int8 on a CPU without VNNI: the row says so
            out[dt] = {"unsupported": str(e)}
            continue
        compile_s = time.perf_counter() - t
        s = run(held_out.images, prefix, MODELS[name].vdsp_json, work / "runs" / dt,
                held_out.masks, batch=8, progress=False)
        out[dt] = {"miou": 100 * s["mean_iou"], "mdice": 100 * s["mean_dice"], "compile_s": compile_s,
                   **({"volumes": s["volumes"]} if s.get("volumes") else {}),
                   **({"calibrate_mode": base.backend.quantize.calibrate_mode} if dt == "int8" else {})}
    return out


def baseline(held_out: SetDirs, size: int, classes: int = 1) -> float:
    """mIoU ×100 of predicting every pixel foreground (class 1 of a multi-class model: the liver), scored
    as `deploy run` scores: a model near it has learned nothing, and its fp16/int8 drops say little."""
    from deploy.data.image import read_gt
    from deploy.data.metrics import Prediction, score_image
    ones = np.ones((size, size), np.uint8)
    pred = Prediction(ones, ones.astype(np.float32)) if classes == 1 else Prediction(ones, None, classes=classes)
    ious = [score_image(pred, read_gt(p, classes == 1))[0] for p in sorted(held_out.masks.iterdir())]
    return 100 * float(np.mean(ious))


def merge_rows(previous: Path, rows: list[dict], width: float) -> list[dict]:
    """The table's rows after this run: the earlier report's rows (`previous`, its JSON) with each model
    measured now replaced in place and new ones appended, so `--models a,b` updates those rows of the
    table and keeps the rest. Rows measured at another width are dropped (one table, one width)."""
    try:
        earlier = json.loads(previous.read_text())
    except (OSError, ValueError):
        return rows
    if earlier.get("width") != width:
        if earlier.get("rows"):
            click.echo(f"note: {previous} holds rows at width {earlier.get('width')}, this run is at width {width}: "
                       "they are replaced", err=True)
        return rows
    now = {r["model"]: r for r in rows}
    merged = [now.pop(r["model"], r) for r in earlier.get("rows", [])]
    return merged + [r for r in rows if r["model"] in now]


def params(name: str, width: float) -> int:
    """Parameter count of the torch definition (BN included, as architectures.md counts it)."""
    code = f"from deploy.zoo.models import create, num_params; print(num_params(create({name!r}, {width})))"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def markdown(result: dict) -> str:
    body = []
    for r in result["rows"]:
        a = r["acc"]
        drops = {dt: a["fp32"]["miou"] - a[dt]["miou"] for dt in ("fp16", "int8") if "miou" in a[dt]}
        ok = all(drops[dt] <= TARGET_DROP[dt] for dt in drops)
        vendor = VENDOR.get(r["model"])
        body.append([r["model"], r["data"], _num(r["all_foreground"]), *(_cell(a[dt]) for dt in DTYPES),
                     _num(drops.get("fp16")), _num(drops.get("int8")), _verdict(ok, drops, r),
                     f"{vendor[0] - vendor[2]:.2f}" if vendor else "–",
                     f"{r['gflops']:.2f}", f"{r['params'] / 1e6:.3f}", _steps(r["train"]["config"]),
                     f"{r['train_s']:.0f}", r["seed"]])
    return ("# Accuracy: fp32 → fp16 → int8 (KL)\n\n" + _wrap(
            f"UNET-ZOO mIoU ×100 on a held-out synthetic set; width {result['width']}. Targets: fp16 drop ≤ "
            f"{TARGET_DROP['fp16']}, int8 drop ≤ {TARGET_DROP['int8']} points. Our models are trained on synthetic "
            "data (no trained weights exist that we can reach), so absolute mIoU is not comparable with the "
            "vendor's; the drops are. `all-fg`: the mIoU of predicting foreground everywhere — a model not above "
            "it has not learned its task (too few training steps): its drops mean nothing and its targets are n/a. "
            f"`train s`: wall-clock of training + export on this machine ({result['machine']['cpu']}), including "
            "whatever else it ran meanwhile; `(bf16)`: bf16 autocast forward, fp32 weights; an int8 cell naming "
            "a mode (`(mse)`): that model's build YAML calibrates with it instead of KL.") + "\n\n"
            + markdown_table(["model", "data, input", "all-fg", "fp32", "fp16", "int8 KL", "fp16 drop", "int8 drop",
                            "targets met", "vendor int8 drop", "GFLOPs (conv)", "params (M)", "steps × batch",
                            "train s", "seed"],
                           body) + _unsupported(result["rows"]) + _volumes(result["rows"])
            + "\n\n## The int8 threshold search\n\n" + _wrap(KL_SECTION))


KL_SECTION = (
    "`calibrate_mode: kl_divergence` (the `int8 KL` column) is TensorRT's entropy calibration exactly as NVIDIA "
    "publishes it in code: `_compute_amax_entropy` in pytorch_quantization/calib/histogram.py (NVIDIA/TensorRT, "
    "tools/pytorch-quantization v2.1: `HistogramCalibrator.compute_amax(\"entropy\")` with its defaults stride 1, "
    "start_bin 128), the implementation of Migacz, \"8-bit Inference with TensorRT\" (GTC 2017, S7310). On a "
    "tensor's |x| histogram (`num_bins`, default 2048 bins over [0, max|x|]) bin 0 takes bin 1's count (the exact "
    "zeros of a post-ReLU tensor quantize exactly at any scale); for every candidate i from `num_quantized_bins` "
    "(128) to the last bin, P is the first i bins with the clipped outliers added to the last one, and Q merges "
    "them into L groups (128 for signed tensors, 256 for unsigned ones, the int8 and uint8 grids the backend "
    "uses), spread back evenly over the non-empty bins; KL(P || Q) is taken as scipy.stats.entropy does, the last "
    "i with the smallest KL wins, and the threshold is i bin widths (scale T/127, or T/255 for uint8). The one "
    "case the published code leaves undefined, a candidate whose first i bins are all empty (0/0, which its "
    "argmin would pick), scores +inf. tests/test_kl.py holds the threshold within one bin of a "
    "candidate-by-candidate transcription of the published code, on eight synthetic distributions at 512 and "
    "2048 bins and on every calibrated tensor of a small UNet, and the streaming histogram the calibration "
    "builds batch by batch within one bin of a one-shot histogram of the same activations. The search itself: "
    "deploy/quantize/thresholds.py.")


def _volumes(rows: list[dict]) -> str:
    """The CT rows' LiTS volume Dice ×100 (per case, global) per precision, under the table."""
    lines = []
    for r in rows:
        vols = {dt: r["acc"][dt].get("volumes") for dt in DTYPES if dt in r["acc"]}
        if not any(vols.values()):
            continue
        keys = list(next(v for v in vols.values() if v)["per_case"])
        cells = [f"{dt} " + ", ".join(f"{k} {100 * v['per_case'][k]:.2f} / {100 * v['global'][k]:.2f}" for k in keys)
                 for dt, v in vols.items() if v]
        lines.append(f"- {r['model']}: " + "; ".join(cells))
    if not lines:
        return ""
    return "\n\nCT volume Dice ×100 (LiTS: per case / global, held-out volumes):\n\n" + "\n".join(lines)


def _wrap(paragraph: str) -> str:
    """Prose lines of at most 120 columns: the README includes this text (deploy.figures)."""
    return textwrap.fill(paragraph, 120, break_long_words=False, break_on_hyphens=False)


def _verdict(ok: bool, drops: dict, row: dict) -> str:
    if row["acc"]["fp32"]["miou"] <= row["all_foreground"]:
        return "n/a: untrained"  # no better than the trivial predictor
    return ("yes" if ok else "NO") if drops else "–"


def _cell(acc: dict) -> str:
    """An mIoU cell; an int8 build calibrated otherwise than by KL names its mode (its build YAML's)."""
    mode = acc.get("calibrate_mode", "kl_divergence")
    return _num(acc.get("miou")) + ("" if mode == "kl_divergence" or "miou" not in acc else f" ({mode})")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _unsupported(rows: list[dict]) -> str:
    notes = sorted({f"{dt}: {a['unsupported']}" for r in rows for dt, a in r["acc"].items() if "unsupported" in a})
    return "".join(f"\n\nn/a — {n}" for n in notes)


def _steps(cfg: dict) -> str:
    return f"{cfg['steps']} × {cfg['batch']}" + (" (bf16)" if cfg.get("precision") == "bf16" else "")


@click.command()
@click.option("--models", "names", default=",".join(DEPLOYABLE), show_default=True)
@click.option("--width", default=1.0, show_default=True, type=float)
@click.option("--steps", default=None, type=int,
              help="Training steps for every model (default: TABLE per model).")
@click.option("--train-images", default=200, show_default=True)
@click.option("--eval-images", default=100, show_default=True)
@click.option("--work", default=Path("workspace/accuracy"), show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default=Path("docs/accuracy.md"), show_default=True, type=click.Path(path_type=Path))
@click.option("--publish", is_flag=True, help="Also publish the table as figure `accuracy` (docs/figures, README).")
def main(names, width, steps, train_images, eval_images, work, out, publish) -> None:
    work = work / f"w{width:g}"
    rows = []
    for name in names.split(","):
        kind = MODELS[name].dataset
        onnx_path, calib, info = train(name, work, width, steps, train_images)
        held_out = synthetic_set(kind, work / "held_out", eval_images, seed=1)
        size = MODELS[name].size
        rows.append({"model": name, "data": f"synthetic {kind}, 3×{size}×{size}", "acc": evaluate(
            name, onnx_path, calib, held_out, work / name), "gflops": conv_flops(onnx.load(str(onnx_path))) / 1e9,
            "all_foreground": baseline(held_out, size, MODELS[name].classes), "params": params(name, width),
            "train_s": info["prepare_seconds"], "seed": info["config"]["seed"], "train": info})
        table = merge_rows(out.with_suffix(".json"), rows, width)
        result = {"width": width, "machine": report.machine(), "rows": table}
        js, md = report.write(out.parent, out.stem, result, markdown(result))
    if publish:  # once, with the whole table
        report.publish("accuracy", result, md.read_text())
    click.echo(md.read_text())
    click.echo(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
