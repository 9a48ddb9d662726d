"""The report's plots, drawn with matplotlib (deploy.tools.plots): the per-image IoU
distribution of every run, for a comparison the per-image IoU change and base-vs-other scatter, and
the per-layer SQNR of an int8 analysis (`deploy analyze` draws it too). matplotlib lays out titles,
ticks and labels itself (constrained layout), so long run names wrap instead of being cut at the
image's edge."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.tools import plots
from deploy.tools.report_runs import Comparison, Run


def require():
    """matplotlib, checked before a report writes anything."""
    return plots.pyplot()


def score_histogram(runs: list[Run], path: Path) -> Path:
    """Per-image IoU of each run over [0, 1], with its mean in the legend."""
    series = [(r.label, [row.iou for row in r.rows.values() if row.iou is not None]) for r in runs]
    most = max(len(v) for _, v in series)
    return plots.iou_histogram(series, path, f"Per-image IoU ({most} images)" if most
                               else "Per-image IoU: no image was scored")


def delta_histogram(comp: Comparison, path: Path) -> Path:
    """IoU(run) − IoU(base) per image: the mass left of 0 is what the lower precision cost."""
    fig, ax = plots.figure()
    vals = [np.array([comp.delta[r.label][i] for i in comp.images]) for r in comp.others]
    lo = min(-0.01, min(v.min() for v in vals))
    hi = max(0.01, max(v.max() for v in vals))
    bins = np.linspace(lo, hi, 31)
    for r, v in zip(comp.others, vals):
        ax.hist(v, bins=bins, histtype="step", linewidth=1.8, label=f"{r.label}: mean {v.mean():+.4f}")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.legend(fontsize=8, loc="upper left")
    return plots.save(fig, ax, path, f"Per-image IoU change against {comp.base.label} ({len(comp.images)} images)",
                      f"IoU(run) − IoU({comp.base.label})", "images")


def scatter(comp: Comparison, path: Path) -> Path:
    """Base IoU against each run's: points below the diagonal got worse."""
    fig, ax = plots.figure()
    base = np.array([comp.base.rows[i].iou for i in comp.images])
    for r in comp.others:
        ax.scatter(base, [r.rows[i].iou for i in comp.images], s=8, alpha=0.6, label=r.label)
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    return plots.save(fig, ax, path, f"Per-image IoU: each run against {comp.base.label}",
                      f"IoU ({comp.base.label})", "IoU (run)")


LAYER_MODES = {"accumulated": "int8 from the input", "isolated": "only this conv in int8"}


def layer_sqnr(layers: list[dict], path: Path, title: str) -> Path:
    """SQNR (dB) of each quantized conv's output against fp32 along the network (graph order, as
    `deploy analyze` writes them in analysis.json): accumulated (int8 from the input) and isolated
    (only that conv in int8); the convs flagged worst in a mode are circled on its line. Exact outputs
    (SQNR null) sit on the top edge."""
    n = len(layers)
    fig, ax = plots.figure((min(max(plots.SIZE_IN[0], 0.16 * n + 2.5), 16.0), 4.8))
    x = np.arange(n)
    series = {k: np.array([np.nan if L[k]["sqnr_db"] is None else L[k]["sqnr_db"] for L in layers], float)
              for k in ("accumulated", "isolated")}
    finite = np.concatenate([v[np.isfinite(v)] for v in series.values()] + [np.zeros(1)])
    top = float(finite.max()) + 5.0
    for k, style in (("accumulated", "o-"), ("isolated", "s--")):
        v = np.where(np.isnan(series[k]), top, series[k])
        line, = ax.plot(x, v, style, markersize=3.5, linewidth=1.4, label=f"{k} ({LAYER_MODES[k]})")
        flagged = [i for i, L in enumerate(layers) if k in L.get("flags", ())]
        if flagged:
            ax.scatter(x[flagged], v[flagged], s=90, facecolors="none", edgecolors=line.get_color(), linewidths=1.5,
                       label=f"worst ({k})", zorder=3)
    step = max(1, int(np.ceil(n / 60)))
    ax.set_xticks(x[::step])
    ax.set_xticklabels([_short(L["node"]) for L in layers][::step], rotation=90, fontsize=7)
    ax.set_xlim(-0.5, max(n, 1) - 0.5)
    ax.legend(fontsize=8, loc="best")
    return plots.save(fig, ax, path, title, "quantized conv (graph order)", "SQNR vs fp32 (dB)")


def _short(name: str, width: int = 28) -> str:
    """A node name that fits under a tick: its tail (exporters prefix the module path)."""
    return name if len(name) <= width else "…" + name[-(width - 1):]
