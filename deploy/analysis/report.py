"""The analysis folder's files: analysis.json (everything, for tools: `deploy report` reads it),
analysis.md (the same for people) and sqnr.png (the per-layer SQNR along the network, drawn by
deploy.tools.report_plots.layer_sqnr; left out with a note in an environment missing matplotlib)."""
from __future__ import annotations

from pathlib import Path

import yaml

from deploy.analysis.errors import db
from deploy.analysis.layers import MIN_FALL_DB, MIN_GAP_DB
from deploy.errors import DeployError
from deploy.io import atomic_write_json, atomic_write_text

FORMAT = 1
FILES = {"json": "analysis.json", "md": "analysis.md", "plot": "sqnr.png"}


def write(folder: Path, data: dict) -> dict[str, Path]:
    """Write the three files (the plot is left out, with a note in both others, without matplotlib)."""
    from deploy.tools import report_plots

    folder = Path(folder)
    paths = {k: folder / v for k, v in FILES.items()}
    try:
        report_plots.layer_sqnr(data["layers"], paths["plot"], f"int8 SQNR per conv: {data['name']} "
                                f"({data['images']['count']} images)")
        data["plot"] = FILES["plot"]
    except DeployError as e:
        data["plot"], data["plot_note"] = None, str(e)
        del paths["plot"]
    atomic_write_json(paths["json"], data, allow_nan=False)
    atomic_write_text(paths["md"], markdown(data))
    return paths


def _miou(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def end_to_end_table(e2e: dict) -> list[str]:
    rows = ["| model | mIoU ×100 | output SQNR (dB) | output cosine |", "|---|---|---|---|"]
    for k in ("fp32", "int8"):
        o = e2e[k]["output"]
        rows.append(f"| {k} | {_miou(e2e[k]['miou'])} | {db(o['sqnr_db'])} | {o['cosine']:.6f} |")
    return rows


def layers_table(layers: list[dict]) -> list[str]:
    rows = ["| # | conv | input | accumulated SQNR (dB) | accumulated cosine | isolated SQNR (dB) | isolated cosine "
            "| fall (dB) | |", "|---|---|---|---|---|---|---|---|---|"]
    for i, L in enumerate(layers):
        a, s = L["accumulated"], L["isolated"]
        fall = "–" if L["acc_fall_db"] is None else f"{L['acc_fall_db']:.1f}"
        rows.append(f"| {i} | `{L['node']}` | {L['input_dtype']} | {db(a['sqnr_db'])} | {a['cosine']:.5f} "
                    f"| {db(s['sqnr_db'])} | {s['cosine']:.5f} | {fall} | {_flags(L)} |")
    return rows


def _flags(layer: dict) -> str:
    return ", ".join(f"**worst {k}**" for k in layer["flags"])


def search_lines(s: dict) -> list[str]:
    lines = [f"## Search: {s['budget']['text']}", "",
             "| step | convs in fp32 | mIoU ×100 | drop | output SQNR (dB) | met |", "|---|---|---|---|---|---|"]
    for i, st in enumerate(s["steps"]):
        drop = "–" if st["miou_drop"] is None else f"{st['miou_drop']:.3f}"
        kept = ", ".join(f"`{n}`" for n in st["kept_fp32"]) or "none"
        lines.append(f"| {i} | {kept} | {_miou(st['miou'])} | {drop} | {db(st['output_sqnr_db'])} "
                     f"| {'yes' if st['met'] else 'no'} |")
    met = s["result"]["met"]
    snippet = yaml.safe_dump({"backend": {"quantize": {"skip_nodes": s["skip_patterns"]}}}, sort_keys=False)
    lines += ["", f"Proposed skip list ({len(s['skip_nodes'])} conv(s) kept in float"
              f"{'' if met else ', budget NOT met'}):", "", "```yaml", snippet.rstrip(), "```", ""]
    return lines


def markdown(d: dict) -> str:
    im, e2e = d["images"], d["end_to_end"]
    lines = [f"# int8 analysis: {d['name']}", "",
             f"Build file `{d['build_yaml']}`; {d['plan']['quantized']} convs in int8, {len(d['plan']['skipped'])} "
             f"in fp32 ({d['plan']['calibrate_mode']} calibration on {d['plan']['calibration_images']} images). "
             f"Measured on {im['count']} images ({im['source']}: `{im['folder']}`), "
             + (f"{im['scored']} with masks (`{im['masks']}`)." if im["scored"] else "without masks."), "",
             "## End to end", "", *end_to_end_table(e2e), ""]
    if e2e["miou_drop"] is not None:
        lines += [f"int8 mIoU drop: {e2e['miou_drop']:.3f} points.", ""]
    w = d["worst"]
    lines += ["## Layers (graph order)", "",
              "Accumulated: the int8 model from the input (the error that arrives there); isolated: only this "
              "conv in int8, fed fp32 inputs (how sensitive it is); fall: accumulated SQNR lost from the nearest "
              "quantized convs upstream to this conv's output.", "",
              f"Most sensitive (isolated SQNR {MIN_GAP_DB:g} dB or more below the median conv's): "
              f"{', '.join(f'`{n}`' for n in w['isolated']) or 'none'}; largest accumulated fall ({MIN_FALL_DB:g} dB "
              f"or more): {', '.join(f'`{n}`' for n in w['accumulated']) or 'none'}.", "",
              *layers_table(d["layers"]), ""]
    lines += [f"![SQNR along the network]({d['plot']})", ""] if d.get("plot") else [f"({d.get('plot_note')})", ""]
    if d.get("search"):
        lines += search_lines(d["search"])
    if d.get("applied_yaml"):
        lines += [f"Written into `{d['applied_yaml']}`.", ""]
    return "\n".join(lines)
