"""`deploy report RUN_DIR [RUN_DIR ...] --out report/`: one folder holding a static HTML report that
opens from disk (no server, no network): each run's metadata, the IoU distribution, a sortable and
paged table of every image with its scores and thumbnails, and with two or more runs of the same
images (fp32 and int8, say) the per-image IoU change, the images that dropped most with their masks
side by side and a map of the pixels where the runs disagree, and a summary of the drops. With an int8
analysis (`deploy analyze`'s analysis.json: `--analysis DIR`, or found beside an int8 run's suite)
the per-layer SQNR along the network, the worst convs and the proposed skip list.

The page (index.html) stays small whatever the run's size: the table's rows are in data.js, and
the inline script puts one page of them into the DOM at a time."""
from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

import click

from deploy.errors import DeployError
from deploy.tools.common import WORKERS
from deploy.io import atomic_write_text
from deploy.tools import report_plots
from deploy.tools.report_runs import DROP_STEPS, Comparison, Run, compare, label_runs, load_run
from deploy.tools.report_thumbs import GAINED, LOST, DIFFER, Thumbnails, write_all

PAGE_SIZE = 100
DROP_MARK = 0.01  # table cells of an IoU drop beyond this are marked


def _asset(name: str) -> str:
    return resources.files("deploy.tools").joinpath("report_assets", name).read_text(encoding="utf-8")


def _e(v) -> str:
    return html.escape(str(v))


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _metadata(runs: list[Run]) -> str:
    metas = [r.metadata() for r in runs]
    return _table(["", *(r.label for r in runs)], [[k, *(m[k] for m in metas)] for k in metas[0]], "meta")


def _drops(comp: Comparison) -> str:
    rows = []
    for d in comp.drops():
        rows.append([d["run"], d["images"], f"{d['base_mean_iou']:.4f}", f"{d['mean_iou']:.4f}",
                     f"{d['mean_delta']:+.4f}", f"{d['median_delta']:+.4f}",
                     *(d[f"dropped_{s:g}"] for s in DROP_STEPS), d["improved_0.01"],
                     f"{d['worst_delta']:+.4f} ({d['worst_image']})",
                     "–" if d["mean_pixels_differ"] is None else f"{100 * d['mean_pixels_differ']:.3f} %",
                     d["images_differ"]])
    header = ["run", "images", f"mean IoU {comp.base.label}", "mean IoU run", "mean ΔIoU", "median ΔIoU",
              *(f"dropped > {s:g}" for s in DROP_STEPS), "improved > 0.01", "worst ΔIoU (image)",
              "mask pixels differing (mean)", "images with any differing pixel"]
    return _table(header, rows, "drops")


def _figure(src: str | None, caption: str) -> str:
    pic = f'<img src="{_e(src)}" alt="{_e(caption)}">' if src else "<div>–</div>"
    return f"<figure>{pic}<figcaption>{_e(caption)}</figcaption></figure>"


def _worst(comp: Comparison, names: list[str], pics: list[dict], comp_pics: dict[str, dict]) -> str:
    index = {n: i for i, n in enumerate(names)}
    legend = (f'<p class="legend">disagreement maps against {_e(comp.base.label)}:'
              f'<span style="background:rgb{LOST}"></span>only in {_e(comp.base.label)}'
              f'<span style="background:rgb{GAINED}"></span>only in the other run'
              f'<span style="background:rgb{DIFFER}"></span>another class</p>')
    rows = []
    for name in comp_pics:
        row, cp, i = pics[index[name]], comp_pics[name], index[name]
        deltas = ", ".join(f"{r.label} {comp.delta[r.label][name]:+.4f}" for r in comp.others)
        figs = [_figure(row["img"], "image"), _figure(row["gt"], "ground truth")]
        figs += [_figure(cp["masks"][k], f"{r.label} IoU {r.rows[name].iou:.3f}")
                 for k, r in enumerate([comp.base, *comp.others])]
        figs += [_figure(cp["differ"][k], f"{r.label} ≠ {comp.base.label}") for k, r in enumerate(comp.others)]
        rows.append(f'<tr data-row="{i}"><td>{_e(name)}<br><span class="note">ΔIoU {_e(deltas)}</span></td>'
                    f'<td><div class="strip">{"".join(figs)}</div></td></tr>')
    return legend + f'<table id="worst"><tbody>{"".join(rows)}</tbody></table>'


def _columns(runs: list[Run], comp: Comparison | None) -> list[dict]:
    cols = [{"key": "image", "label": "image", "type": "text"}, {"key": "status", "label": "status", "type": "text"}]
    for k, r in enumerate(runs):
        cols += [{"key": f"iou_{k}", "label": f"IoU {r.label}", "type": "num"},
                 {"key": f"dice_{k}", "label": f"Dice {r.label}", "type": "num"}]
    if comp is not None:
        for k, r in enumerate(comp.others, start=1):
            cols += [{"key": f"delta_{k}", "label": f"ΔIoU {r.label}", "type": "delta"},
                     {"key": f"differ_{k}", "label": f"pixels differ {r.label}", "type": "pct"}]
    return cols


def _row(name: str, runs: list[Run], comp: Comparison | None) -> list:
    got = [r.rows.get(name) for r in runs]
    statuses = sorted({g.status for g in got if g is not None} | ({"not in every run"} if None in got else set()))
    vals: list = [name, ", ".join(statuses)]
    for g in got:
        vals += [None, None] if g is None else [g.iou, g.dice]
    if comp is not None:
        for r in comp.others:
            vals += [comp.delta[r.label].get(name), comp.differ[r.label].get(name)]
    return vals


def _data_js(runs: list[Run], comp: Comparison | None, names: list[str], pics: list[dict]) -> str:
    data = {"columns": _columns(runs, comp), "rows": [_row(n, runs, comp) for n in names],
            "pictures": ["image", "ground truth", *(f"prediction {r.label}" for r in runs)],
            "pics": [[p["img"], p["gt"], *p["runs"]] for p in pics], "page_size": PAGE_SIZE,
            "drop_mark": DROP_MARK, "default_sort": "delta_1" if comp is not None else "iou_0",
            "default_dir": "asc"}
    return "window.REPORT_DATA = " + json.dumps(data, separators=(",", ":"), allow_nan=False) + ";\n"


ANALYSIS_JSON = "analysis.json"


def find_analysis(runs: list[Run]) -> Path | None:
    """The analysis folder of the first int8 run's suite that has one (`<suite>.analysis`)."""
    from deploy.runtime.suite import analysis_dir
    for r in runs:
        prefix = r.summary.get("model")
        if r.dtype == "int8" and prefix and (analysis_dir(Path(prefix).parent) / ANALYSIS_JSON).is_file():
            return analysis_dir(Path(prefix).parent)
    return None


def load_analysis(folder) -> dict:
    path = Path(folder) / ANALYSIS_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DeployError(f"--analysis {folder}: no readable {ANALYSIS_JSON} ({e}); write one with "
                          "`deploy analyze BUILD.yaml --out-dir DIR`") from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise DeployError(f"{path}: not an analysis written by `deploy analyze`")
    return data


def _db(v) -> str:
    return "exact" if v is None else f"{v:.1f}"


def _layers(a: dict, plot: str) -> str:
    """The int8 layers section: the SQNR plot, the flagged convs, the end-to-end numbers, the skip list."""
    e2e, im = a["end_to_end"], a["images"]
    miou = ", ".join(f"{k} mIoU {e2e[k]['miou']:.3f}" for k in ("fp32", "int8") if e2e[k]["miou"] is not None)
    note = (f"deploy analyze of {a['name']} ({a['plan']['quantized']} convs in int8) on {im['count']} images "
            f"({im['source']}); {miou + '; ' if miou else ''}int8 output SQNR "
            f"{_db(e2e['int8']['output']['sqnr_db'])} dB")
    rows = [[L["node"], ", ".join(L["flags"]), _db(L["accumulated"]["sqnr_db"]), f"{L['accumulated']['cosine']:.5f}",
             _db(L["isolated"]["sqnr_db"]), f"{L['isolated']['cosine']:.5f}",
             "–" if L["acc_fall_db"] is None else f"{L['acc_fall_db']:.1f}"] for L in a["layers"] if L["flags"]]
    parts = ["<h2 id='layers'>int8 layers</h2>", f'<p class="note">{_e(note)}</p>',
             f'<div class="plots"><img src="{_e(plot)}" alt="per-layer SQNR"></div>' if plot else "",
             _table(["conv", "worst by", "accumulated SQNR (dB)", "accumulated cosine", "isolated SQNR (dB)",
                     "isolated cosine", "fall (dB)"], rows, "layers") if rows else "<p>No conv stands out.</p>"]
    search = a.get("search")
    if search:
        r = search["result"]
        got = (f"mIoU drop {r['miou_drop']:.3f}" if r["miou_drop"] is not None
               else f"output SQNR {_db(r['output_sqnr_db'])} dB")
        parts.append(f"<p>Skip list for {_e(search['budget']['text'])} ({'met' if r['met'] else 'NOT met'}, {_e(got)}, "
                     f"{len(search['steps'])} candidates measured): "
                     + (", ".join(f"<code>{_e(n)}</code>" for n in search["skip_nodes"]) or "none needed") + "</p>")
    return "".join(parts)


def _page(runs: list[Run], comp: Comparison | None, plots: list[str], worst: tuple[int, str], note: str,
          layers: str = "") -> str:
    title = "segdeploy report: " + " vs ".join(r.label for r in runs)
    parts = [f"<h1>{_e(title)}</h1>", f'<p class="note">{_e(note)}</p>' if note else "",
             "<h2 id='runs'>Runs</h2>", _metadata(runs),
             "<h2 id='distribution'>Score distribution</h2>",
             '<div class="plots">' + "".join(f'<img src="{_e(p)}" alt="{_e(Path(p).stem)}">' for p in plots) + "</div>"]
    if comp is not None:
        parts += [f"<h2 id='drops'>IoU change against {_e(comp.base.label)}</h2>",
                  f'<p class="note">over the {len(comp.images)} images every run scored; ΔIoU = IoU(run) − '
                  f'IoU({_e(comp.base.label)})</p>', _drops(comp),
                  f"<h2 id='comparison'>The {worst[0]} images whose IoU dropped most</h2>", worst[1]]
    parts += [layers, "<h2 id='images'>Every image</h2>",
              '<div class="pager"><button id="prev">◀ previous</button><span id="page-info"></span>'
              '<button id="next">next ▶</button><input id="filter" placeholder="filter by name" size="24">'
              '<span class="note">click a column to sort</span></div>',
              '<table id="images-table"><thead id="table-head"></thead><tbody id="table-body"></tbody></table>']
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_asset('report.css')}</style></head><body>{''.join(parts)}"
            f'<script src="data.js"></script><script>{_asset("report.js")}</script></body></html>\n')


def build(run_dirs: list, out, *, top: int = 24, image_dir=None, mask_dir=None, workers: int = 4,
          analysis=None) -> Path:
    """Write the report into `out`; returns its index.html. `top`: images the comparison shows;
    `analysis`: a `deploy analyze` folder (default: the one beside an int8 run's suite, if any)."""
    if not run_dirs:
        raise DeployError("deploy report needs at least one run folder")
    report_plots.require()  # before any thumbnail is written
    runs = [load_run(d, image_dir, mask_dir) for d in run_dirs]
    out = Path(out)
    if any(out.resolve() == r.path.resolve() for r in runs):
        raise DeployError(f"--out {out} is a run folder: give the report a folder of its own")
    out.mkdir(parents=True, exist_ok=True)
    label_runs(runs)
    comp = compare(runs)
    note = ""
    if len(runs) > 1 and comp is None:
        note = "the runs share no image that all of them scored, so they are shown side by side but not compared"
    if not any(r.image_dir for r in runs):
        note += ("; " if note else "") + ("the source images are unknown (older run folder): "
                                          "pass --images and --masks for their thumbnails")
    names = sorted(set().union(*(r.rows for r in runs)))
    worst = comp.worst(top) if comp is not None else []
    pics, comp_pics = write_all(Thumbnails(out, runs), names, worst, workers)
    plots = [report_plots.score_histogram(runs, out / "iou_hist.png")]
    if comp is not None:
        plots += [report_plots.delta_histogram(comp, out / "iou_delta.png"),
                  report_plots.scatter(comp, out / "iou_scatter.png")]
    layers = _layers_section(runs, analysis, out)
    atomic_write_text(out / "data.js", _data_js(runs, comp, names, pics))
    worst_html = (len(worst), _worst(comp, names, pics, comp_pics)) if comp is not None else (0, "")
    index = out / "index.html"
    atomic_write_text(index, _page(runs, comp, [p.name for p in plots], worst_html, note, layers))
    return index


def _layers_section(runs: list[Run], analysis, out: Path) -> str:
    folder = analysis if analysis is not None else find_analysis(runs)
    if folder is None:
        return ""
    a = load_analysis(folder)
    plot = report_plots.layer_sqnr(a["layers"], out / "layers_sqnr.png",
                                   f"int8 SQNR per conv: {a['name']} ({a['images']['count']} images)")
    return _layers(a, plot.name)


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="The report's folder.")
@click.option("--top", type=click.IntRange(1), default=24, show_default=True,
              help="How many of the images whose IoU dropped most the comparison shows.")
@click.option("--images", "image_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Source images [default: the folder the run's summary.json names].")
@click.option("--masks", "mask_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Ground-truth masks [default: the folder the run's summary.json names].")
@click.option("--workers", type=WORKERS, default=4, show_default=True, help="Thumbnail threads.")
@click.option("--analysis", "analysis", type=click.Path(file_okay=False, exists=True), default=None,
              help="A `deploy analyze` folder: adds the int8 layers section [default: the one beside an int8 "
                   "run's suite, if any].")
def cli(run_dirs, out, top, image_dir, mask_dir, workers, analysis):
    """A static HTML report of one or more runs (deploy run / deploy eval folders); the first is the
    base the others are compared with."""
    index = build(list(run_dirs), out, top=top, image_dir=image_dir, mask_dir=mask_dir, workers=workers,
                  analysis=analysis)
    click.echo(f"wrote {index}")
