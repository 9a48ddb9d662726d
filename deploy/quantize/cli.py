"""`deploy analyze BUILD_YAML [--recalibrate] [--out-dir DIR] [--qdq OUT.onnx] [--ort-qdq OUT.onnx]`:
calibrate, print the int8 plan per conv, and optionally write the plan as QDQ ONNX models to run in
onnxruntime.

It writes only into its own report folder (`--out-dir`, default `<workspace>/<name>.analysis/`:
calibration.json), never into a compiled suite: a suite's files are written together, atomically,
by `deploy compile`, and its mod.json records which images its calibration came from. A suite's
calibration.json is copied into the report folder the first time, so an analysis after a compile is
not recalibrated (it is reused when its key still matches)."""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from deploy.config import load_build_config
from deploy.errors import DeployError


@click.command("analyze")
@click.argument("build_yaml", type=click.Path(dir_okay=False))
@click.option("--recalibrate", is_flag=True, help="Recompute the calibration instead of using the cache.")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Report folder (calibration.json) [default: <workspace>/<name>.analysis]; never a suite.")
@click.option("--qdq", "qdq_out", type=click.Path(dir_okay=False), default=None,
              help="Write the plan as a QDQ ONNX model (the arithmetic of the int8 build, fake-quant in onnxruntime).")
@click.option("--ort-qdq", "ort_out", type=click.Path(dir_okay=False), default=None,
              help="Write onnxruntime's quantize_static QDQ model with this calibration (int8 kernels in onnxruntime).")
def analyze_cmd(build_yaml: str, recalibrate: bool, out_dir: str | None, qdq_out: str | None,
                ort_out: str | None) -> None:
    """Show which convs an int8 build quantizes, with which activation dtype, scale and threshold."""
    from deploy.frontend.source import load_source
    from deploy.quantize import plan
    from deploy.quantize.cache import CACHE_FILE

    cfg = load_build_config(build_yaml)
    report = Path(out_dir) if out_dir else cfg.workspace / f"{cfg.name}.analysis"
    for flag, path in (("--out-dir", report), ("--qdq", qdq_out and Path(qdq_out).parent),
                       ("--ort-qdq", ort_out and Path(ort_out).parent)):
        if path:
            _refuse_suite(Path(path), flag, cfg.artifact_dir)
    model = load_source(cfg).model  # the graph a compile calibrates: a PyTorch file is converted the same way
    _seed_cache(cfg.artifact_dir / CACHE_FILE, report / CACHE_FILE)
    p = plan(cfg, model, report, recalibrate=recalibrate)
    click.echo(p.summary())
    click.echo(f"calibration: {p.cache_path}{' (reused)' if p.from_cache else ''}")
    click.echo(f"{'node':<40} {'input dtype':<11} {'scale':>11} {'threshold':>10} {'max |x|':>10}  weights")
    for name, c in p.convs.items():
        a = p.activations[c.input]
        w = "per channel" if c.weight_axis is not None else "per tensor"
        click.echo(f"{name[-40:]:<40} {a.dtype:<11} {a.scale:>11.4g} {a.threshold:>10.4g} "
                   f"{max(a.max, -a.min):>10.4g}  {w}, {c.weight_scale.size} scale(s)")
    if qdq_out:
        from deploy.quantize.qdq import write_qdq
        click.echo(f"qdq model: {write_qdq(model, p, qdq_out)}")
    if ort_out:
        from deploy.quantize.qdq import ort_quantize_static
        click.echo(f"onnxruntime qdq model: {ort_quantize_static(model, p, ort_out)}")


def _refuse_suite(folder: Path, flag: str, suite: Path) -> None:
    """`folder` must not be a compiled suite (the build's own, or any folder with a `<prefix>.so` +
    `<prefix>.json` pair): only `deploy compile` writes there."""
    folder = folder.resolve()
    if folder == suite.resolve() or any(j.with_suffix(".so").is_file() for j in folder.glob("*.json")):
        raise DeployError(f"{flag} {folder}: a compiled model suite; `deploy analyze` never writes into one "
                          "(choose another folder)")


def _seed_cache(suite_cache: Path, report_cache: Path) -> None:
    """Start the report from the suite's calibration (read only), when the report has none yet."""
    if suite_cache.is_file() and not report_cache.exists():
        report_cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(suite_cache, report_cache)
