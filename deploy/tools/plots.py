"""matplotlib, the one plotting library of the tools: a run's per-image IoU histogram (`deploy run` /
`deploy eval`) and the report's plots (report_plots.py). It lays out titles, ticks and labels
itself (constrained layout) and the titles wrap, so a long run folder's name is never cut at the
image's edge. The Agg backend draws to files only: no display, no GUI toolkit."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deploy.errors import DeployError
from deploy.io import atomic_save

INSTALL_HINT = "pip install matplotlib (a dependency of segdeploy: reinstall it with pip install segdeploy)"
SIZE_IN = (6.4, 4.0)
DPI = 100


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or a clear error naming the install."""
    try:
        import matplotlib
    except ImportError:
        raise DeployError(f"the plots are drawn with matplotlib, which is missing from this environment: "
                          f"{INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def figure(size: tuple[float, float] = SIZE_IN):
    return pyplot().subplots(figsize=size, layout="constrained")


def save(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """Label, then write the PNG atomically (a killed run leaves no half image)."""
    ax.set_title(textwrap.fill(title, 70), fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    pyplot().close(fig)
    return Path(path)


def iou_histogram(series: Sequence[tuple[str, Sequence[float]]], path: Path, title: str) -> Path:
    """Per-image IoU over [0, 1] of one run (bars) or several (outlines), each labelled with its mean."""
    fig, ax = figure()
    bins = np.linspace(0, 1, 21)
    drawn = False
    for label, values in series:
        ious = np.clip(np.asarray(values, dtype=np.float64), 0, 1)
        if ious.size:
            ax.hist(ious, bins=bins, histtype="step" if len(series) > 1 else "bar", linewidth=1.8,
                    label=f"{label}: mean {ious.mean():.4f} ({ious.size} images)")
            drawn = True
    if drawn:
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(0, 1)
    return save(fig, ax, path, title, "per-image IoU (UNET-ZOO)", "images")
