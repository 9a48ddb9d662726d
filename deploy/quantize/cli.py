"""`deploy analyze BUILD_YAML [--recalibrate] [--qdq OUT.onnx] [--ort-qdq OUT.onnx]`: calibrate (or
reuse `<workspace>/<name>/calibration.json`), print the int8 plan per conv, and optionally write
the plan as QDQ ONNX models to run in onnxruntime."""
from __future__ import annotations

import click

from deploy.config import load_build_config


@click.command("analyze")
@click.argument("build_yaml", type=click.Path(dir_okay=False))
@click.option("--recalibrate", is_flag=True, help="Recompute the calibration instead of using the cache.")
@click.option("--qdq", "qdq_out", type=click.Path(dir_okay=False), default=None,
              help="Write the plan as a QDQ ONNX model (the arithmetic of the int8 build, fake-quant in onnxruntime).")
@click.option("--ort-qdq", "ort_out", type=click.Path(dir_okay=False), default=None,
              help="Write onnxruntime's quantize_static QDQ model with this calibration (int8 kernels in onnxruntime).")
def analyze_cmd(build_yaml: str, recalibrate: bool, qdq_out: str | None, ort_out: str | None) -> None:
    """Show which convs an int8 build quantizes, with which activation dtype, scale and threshold."""
    from deploy.frontend.source import load_source
    from deploy.quantize import plan

    cfg = load_build_config(build_yaml)
    model = load_source(cfg).model  # the graph a compile calibrates: a PyTorch file is converted the same way
    p = plan(cfg, model, cfg.artifact_dir, recalibrate=recalibrate)
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
