"""`make demo`: the whole vendor workflow on one zoo model, as a user types it — compile fp32,
fp16 and int8, then for each: vsx_inference.py, image2npz.py → deploy perf (speed and accuracy
modes) → vamp_eval.py --vamp_flag — and an accuracy/speed table at the end.

Every step is the real command in a child process, printed before it runs, so the demo doubles
as a copy-paste tutorial. Evaluation uses a held-out synthetic set (another seed than training).
A CT model's vsx_inference.py reads the NIfTI volumes themselves (the other route reads their
exported slices), and the table adds the LiTS volume Dice (per case and global, liver and tumour).
"""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from deploy.catalogue import DEPLOYABLE, MODELS, REPO
from deploy.config import load_build_config
from deploy.data.sets import LITS_LABELS, LITS_SLICES, SetDirs, set_dirs
from deploy.io import atomic_write_json, atomic_write_text
from deploy.tools.report import markdown_table


def sh(*args) -> None:
    cmd = [str(a) for a in args]
    click.secho("$ " + shlex.join(cmd), fg="cyan", err=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def deploy(*args) -> None:
    sh(sys.executable, "-m", "deploy", *args)


def script(name: str, *args) -> None:
    sh(sys.executable, name, *args)


def volumes_dir(model: str, out: Path) -> Path | None:
    """A CT model's held-out NIfTI volumes (what its slices are exported from); None for the others."""
    return out / "data" / "lits" if MODELS[model].dataset in LITS_LABELS else None


def eval_set(model: str, out: Path, n: int) -> SetDirs:
    """A held-out set (seed 1; training used seed 0) in the model's dataset layout; CT: volumes
    enough for n slices, then sliced as the model's masks need."""
    kind = MODELS[model].dataset
    root = out / "data"
    dirs = set_dirs(kind, root)
    if not dirs.images.is_dir():
        if kind in LITS_LABELS:
            volumes = volumes_dir(model, out)
            deploy("data", "synth", "lits", volumes, "--n", math.ceil(n / LITS_SLICES), "--seed", 1,
                   "--slices", LITS_SLICES)
            deploy("data", "slices", volumes, dirs.root, "--labels", LITS_LABELS[kind])
        else:
            deploy("data", "synth", kind, root, "--n", n, "--seed", 1)
    return dirs


def run_dtype(model: str, dtype: str, data: SetDirs, out: Path, npz: tuple[Path, Path]) -> dict:
    yaml_file = MODELS[model].build_yaml
    cfg = load_build_config(yaml_file).with_dtype(dtype)
    vdsp = MODELS[model].vdsp_json
    h, w = next(iter(cfg.frontend.shape.values()))[2:]
    t = time.perf_counter()
    deploy("compile", yaml_file, "--dtype", dtype)
    compile_s = time.perf_counter() - t
    d = out / dtype
    volumes = volumes_dir(model, out)
    source = ("--file_path", volumes) if volumes else ("--file_path", data.images, "--gt_path", data.masks)
    script("vsx_inference.py", *source, "--model_prefix_path", cfg.prefix, "--vdsp_params_info", vdsp, "--device", 0,
           "--batch", 8, "--save_dir", d / "vsx")
    deploy("perf", "-m", cfg.prefix, "--vdsp_params", vdsp, "-i", 1, "-p", 1, "-b", 8, "-s", f"[3,{h},{w}]",
           "--iterations", 20, "--json", d / "perf.json")
    deploy("perf", "-m", cfg.prefix, "--vdsp_params", vdsp, "-i", 1, "-p", 1, "-b", 1, "-s", f"[3,{h},{w}]",
           "--datalist", npz[1], "--path_output", d / "npz_output")
    script("vamp_eval.py", "--src_dir", data.images, "--gt_dir", data.masks, "--input_npz_path", npz[1],
           "--out_npz_dir", d / "npz_output", "--input_shape", h, w, "--draw_dir", d / "draw", "--vamp_flag",
           "-m", cfg.prefix)
    vsx = json.loads((d / "vsx" / "summary.json").read_text())
    vamp = json.loads((d / "draw" / "summary.json").read_text())
    perf = json.loads((d / "perf.json").read_text())
    return {"dtype": dtype, "compile_s": compile_s, "vsx_miou": vsx["mean_iou"], "vsx_dice": vsx["mean_dice"],
            "vamp_miou": vamp["mean_iou"], "qps": perf["throughput_qps"], "prefix": str(cfg.prefix),
            "volumes": vsx.get("volumes")}


def volume_columns(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The table's LiTS columns (×100): Dice per case and global Dice for each structure the runs scored
    per volume; none when the set has no CT volumes."""
    vols = [r["volumes"] for r in rows]
    if any(v is None for v in vols):
        return [], [[] for _ in rows]
    keys = list(vols[0]["per_case"])
    head = [f"{k} Dice {part} ×100" for k in keys for part in ("per case", "global")]
    return head, [[f"{100 * v[part][k]:.3f}" for k in keys for part in ("per_case", "global")] for v in vols]


@click.command()
@click.option("--model", default="unetpp", show_default=True, type=click.Choice(DEPLOYABLE))
@click.option("--dtypes", default="fp32,fp16,int8", show_default=True)
@click.option("--images", default=40, show_default=True, help="Held-out images to evaluate on.")
@click.option("--out", default=REPO / "workspace" / "demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--publish", is_flag=True, help="Also publish the table as figure demo-MODEL (docs/figures, README).")
def main(model: str, dtypes: str, images: int, out: Path, publish: bool) -> None:
    out = out / model
    data = eval_set(model, out, images)
    npz = (out / "npz", out / "npz_datalist.txt")
    script("image2npz.py", "--dataset_path", data.images, "--target_path", npz[0], "--text_path", npz[1],
           "--suffix", "png")
    rows = [run_dtype(model, dt, data, out, npz) for dt in dtypes.split(",")]
    base = rows[0]["vsx_miou"]
    vol_head, vol_cells = volume_columns(rows)
    md = markdown_table(["dtype", "mIoU ×100 (vsx_inference)", "mIoU ×100 (image2npz→perf→vamp_eval)",
                         "drop vs " + rows[0]["dtype"], "Dice ×100", *vol_head, "throughput img/s (b8)", "compile s"],
                        [[r["dtype"], f"{100 * r['vsx_miou']:.3f}", f"{100 * r['vamp_miou']:.3f}",
                          f"{100 * (base - r['vsx_miou']):.3f}", f"{100 * r['vsx_dice']:.3f}", *cells,
                          f"{r['qps']:.1f}", f"{r['compile_s']:.1f}"] for r, cells in zip(rows, vol_cells)])
    atomic_write_json(out / "results.json", rows)
    atomic_write_text(out / "results.md", f"# demo: {model}\n\n{md}")
    deploy("report", *(out / r["dtype"] / "vsx" for r in rows), "--out", out / "report")
    what = (f"{rows[0]['volumes']['slices']} axial slices of {rows[0]['volumes']['volumes']} held-out synthetic CT "
            "volumes" if vol_head else f"{images} held-out synthetic images")
    caption = (f"{model} on {what} (UNET-ZOO mIoU; empty GT and empty prediction count as IoU 1"
               + ("; LiTS Dice per case = mean over volumes, global = all voxels pooled" if vol_head else "") + "):")
    if publish:
        from deploy.figures import publish as publish_figure
        publish_figure(f"demo-{model}", f"`make demo`: {caption}\n\n{md}")
    click.echo(f"\n{caption}\n\n{md}\nwrote {out / 'results.md'}\n"
               f"comparison report ({' vs '.join(r['dtype'] for r in rows)}): {out / 'report' / 'index.html'}")


if __name__ == "__main__":
    main()
