"""`deploy analyze BUILD_YAML`: the int8 plan per conv, then what quantization does to the network —
per quantized conv the SQNR and cosine of its output against fp32, accumulated and isolated, the
worst convs, the end-to-end mIoU (or output SQNR) of fp32 and int8 — and with `--max-drop X` /
`--min-sqnr DB` the smallest set of convs to keep in fp32 (`--apply` writes it into the build YAML's
skip_nodes: a copy, or `--in-place`).

Options kept from the plan-only command: `--recalibrate`, `--out-dir DIR` (the analysis folder,
default `<workspace>/<name>.analysis/`, never a suite), `--qdq OUT.onnx`, `--ort-qdq OUT.onnx`.
The analysis is of the int8 build of the YAML whatever its backend.dtype (the suite `deploy compile
--dtype int8` makes). Files: analysis.md, analysis.json, sqnr.png and calibration.json in the folder.
"""
from __future__ import annotations

from pathlib import Path

import click

from deploy.config import load_build_config


def _plan_table(p) -> None:
    click.echo(p.summary())
    click.echo(f"calibration: {p.cache_path}{' (reused)' if p.from_cache else ''}")
    click.echo(f"{'node':<40} {'input dtype':<11} {'scale':>11} {'threshold':>10} {'max |x|':>10}  weights")
    for name, c in p.convs.items():
        a = p.activations[c.input]
        w = "per channel" if c.weight_axis is not None else "per tensor"
        click.echo(f"{name[-40:]:<40} {a.dtype:<11} {a.scale:>11.4g} {a.threshold:>10.4g} "
                   f"{max(a.max, -a.min):>10.4g}  {w}, {c.weight_scale.size} scale(s)")


def _layer_table(d: dict) -> None:
    from deploy.analysis.errors import db
    click.echo(f"\n{'conv':<40} {'acc SQNR':>9} {'acc cos':>9} {'iso SQNR':>9} {'iso cos':>9} {'fall':>6}")
    for L in d["layers"]:
        a, s = L["accumulated"], L["isolated"]
        fall = "" if L["acc_fall_db"] is None else f"{L['acc_fall_db']:.1f}"
        click.echo(f"{L['node'][-40:]:<40} {db(a['sqnr_db']):>9} {a['cosine']:>9.5f} {db(s['sqnr_db']):>9} "
                   f"{s['cosine']:>9.5f} {fall:>6}{'  <- worst ' + ', '.join(L['flags']) if L['flags'] else ''}")
    w = d["worst"]
    click.echo(f"worst (isolated SQNR): {', '.join(w['isolated']) or 'none'}")
    click.echo(f"worst (accumulated fall): {', '.join(w['accumulated']) or 'none'}")


def _db(v: float | None) -> str:
    from deploy.analysis.errors import db
    return db(v) + ("" if v is None else " dB")


def _end_to_end(d: dict) -> None:
    e = d["end_to_end"]
    for k in ("fp32", "int8"):
        m = e[k]["miou"]
        click.echo(f"{k}: " + (f"mIoU {m:.3f} ({e[k]['images_scored']} images with masks), " if m is not None else "")
                   + f"output SQNR {_db(e[k]['output']['sqnr_db'])}, cosine {e[k]['output']['cosine']:.6f}")
    if e["miou_drop"] is not None:
        click.echo(f"int8 mIoU drop: {e['miou_drop']:.3f} points")


def _search(d: dict) -> None:
    s = d["search"]
    r = s["result"]
    got = (f"drop {r['miou_drop']:.3f}" if s["budget"]["max_drop"] is not None
           else f"output SQNR {_db(r['output_sqnr_db'])}")
    click.echo(f"search ({s['budget']['text']}, {len(s['steps'])} candidates measured): "
               f"{'met' if r['met'] else 'NOT met'} with {len(s['skip_nodes'])} conv(s) in fp32 ({got})")
    for n in s["skip_nodes"]:
        click.echo(f"  skip: {n}")


@click.command("analyze")
@click.argument("build_yaml", type=click.Path(dir_okay=False))
@click.option("--recalibrate", is_flag=True, help="Recompute the calibration instead of using the cache.")
@click.option("--out-dir", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Analysis folder [default: <workspace>/<name>.analysis]; never a suite.")
@click.option("--qdq", "qdq_out", type=click.Path(dir_okay=False), default=None,
              help="Write the plan as a QDQ ONNX model (the arithmetic of the int8 build, fake-quant in onnxruntime).")
@click.option("--ort-qdq", "ort_out", type=click.Path(dir_okay=False), default=None,
              help="Write onnxruntime's quantize_static QDQ model with this calibration (int8 kernels in onnxruntime).")
@click.option("--images", "images", type=click.Path(file_okay=False, exists=True), default=None,
              help="Measure on the images of this folder [default: the calibration images].")
@click.option("--masks", "masks", type=click.Path(file_okay=False, exists=True), default=None,
              help="Their ground-truth masks [default: a masks/seg/gt folder beside the images, if any].")
@click.option("--max-drop", "max_drop", type=click.FloatRange(min=0), default=None,
              help="Search the fewest convs to keep in fp32 for an int8 mIoU drop <= X points (needs masks).")
@click.option("--min-sqnr", "min_sqnr", type=float, default=None,
              help="Search the fewest convs to keep in fp32 for an output SQNR >= DB (no masks needed).")
@click.option("--apply", "apply_", is_flag=True,
              help="Write the search's convs into backend.quantize.skip_nodes of a copy of the YAML (analysis folder).")
@click.option("--in-place", "in_place", is_flag=True, help="With --apply: rewrite the build YAML itself.")
@click.option("--worst", type=click.IntRange(1), default=3, show_default=True,
              help="At most this many convs flagged per mode (those that stand out).")
@click.option("--plan-only", is_flag=True, help="Only print the int8 plan (no images are run).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def analyze_cmd(build_yaml: str, recalibrate: bool, out_dir: str | None, qdq_out: str | None, ort_out: str | None,
                images: str | None, masks: str | None, max_drop: float | None, min_sqnr: float | None,
                apply_: bool, in_place: bool, worst: int, plan_only: bool, progress: bool) -> None:
    """Show the int8 plan per conv and what it does to the network: per-layer SQNR and cosine against fp32
    (accumulated and isolated), end-to-end mIoU, and the smallest fp32 skip list within a budget."""
    from deploy.analysis import analyze as A
    from deploy.analysis import report
    from deploy.analysis.search import Budget

    if max_drop is not None and min_sqnr is not None:
        raise click.UsageError("give one budget: --max-drop or --min-sqnr")
    budget = None if max_drop is None and min_sqnr is None else Budget(max_drop, min_sqnr)
    if (apply_ or in_place) and budget is None:
        raise click.UsageError("--apply/--in-place write the skip list the search finds: add --max-drop or --min-sqnr")
    if budget is not None and plan_only:
        raise click.UsageError("--plan-only runs no images: it cannot search")
    cfg = load_build_config(build_yaml).with_dtype("int8")
    folder = Path(out_dir) if out_dir else A.default_folder(cfg)
    for flag, path in (("--out-dir", folder), ("--qdq", qdq_out and Path(qdq_out).parent),
                       ("--ort-qdq", ort_out and Path(ort_out).parent)):
        if path:
            A.refuse_suite(Path(path), flag, cfg.artifact_dir)
    model, p = A.load_plan(cfg, folder, recalibrate, progress)
    _plan_table(p)
    if qdq_out:
        from deploy.quantize.qdq import write_qdq
        click.echo(f"qdq model: {write_qdq(model, p, qdq_out)}")
    if ort_out:
        from deploy.quantize.qdq import ort_quantize_static
        click.echo(f"onnxruntime qdq model: {ort_quantize_static(model, p, ort_out)}")
    if plan_only:
        return
    a = A.analyze(cfg, model, p, images=images, masks=masks, budget=budget, worst=worst, progress=progress)
    if apply_ or in_place:
        from deploy.analysis.apply import apply
        a.applied_yaml = apply(cfg, a.search.kept, folder, in_place=in_place)
    data = a.to_dict()
    paths = report.write(folder, data)
    _layer_table(data)
    _end_to_end(data)
    if budget is not None:
        _search(data)
    if a.applied_yaml:
        click.echo(f"skip list written: {a.applied_yaml}  (build it: deploy compile {a.applied_yaml})")
    click.echo("analysis: " + ", ".join(str(v) for v in paths.values()))
    if data.get("plot_note"):
        click.echo(f"note: sqnr.png not drawn: {data['plot_note']}")
