"""Per-image results (results.csv) and the run summary (summary.json, summary.md, iou_hist.png),
shared by `deploy run` and `deploy eval` so both routes report the same numbers the same way."""
from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from deploy.data.metrics import EMPTY_NOTE
from deploy.io import DISK_FULL, atomic_write_json, atomic_write_text, disk_full
from deploy.tools import plots

OK = "ok"
NO_MASK = "no mask"
BAD_IMAGE = "unreadable image"
BAD_MASK = "unreadable mask"
MISSING_OUTPUT = "missing output"
FIELDS = ("image", "mask", "status", "iou", "dice", "detail")
RESULTS = "results.csv"
VOLUMES = "volumes.csv"  # CT slices grouped by volume (deploy.data.volume_metrics)
SUMMARY_FILES = {"json": "summary.json", "md": "summary.md", "hist": "iou_hist.png"}  # write_summary's files


@dataclass(frozen=True)
class Row:
    """One image's line of results.csv; iou/dice are None when it could not be scored."""
    image: str
    status: str
    iou: float | None = None
    dice: float | None = None
    mask: str = ""
    detail: str = ""

    def csv_line(self) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(
            [self.image, self.mask, self.status, _num(self.iou), _num(self.dice), self.detail])
        return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None else repr(float(v))  # full precision: a resumed run re-reads these


def header() -> str:
    return ",".join(FIELDS) + "\n"


def read_rows(path: str | os.PathLike) -> dict[str, Row]:
    """results.csv → {image: Row}; a torn last line (the run was killed mid-write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return {}
    text = path.read_text(errors="replace")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    rows = {}
    for rec in csv.DictReader(io.StringIO(text)):
        try:
            iou = float(rec["iou"]) if rec.get("iou") else None
            dice = float(rec["dice"]) if rec.get("dice") else None
            rows[rec["image"]] = Row(rec["image"], rec["status"], iou, dice, rec.get("mask") or "",
                                     rec.get("detail") or "")
        except (KeyError, TypeError, ValueError):
            continue
    return rows


def write_rows(path: str | os.PathLike, rows: list[Row]) -> None:
    """The whole results.csv, sorted by image name, replaced atomically."""
    atomic_write_text(path, header() + "".join(r.csv_line() for r in sorted(rows, key=lambda r: r.image)))


class RowAppender:
    """Appends one line per finished image and flushes it, so an interrupted run loses nothing."""

    def __init__(self, path: str | os.PathLike, rows: list[Row]):
        write_rows(path, rows)
        self.path = Path(path)
        self.f = open(path, "a", newline="")

    def add(self, row: Row) -> None:
        try:
            self.f.write(row.csv_line())
            self.f.flush()
        except OSError as e:
            if e.errno in DISK_FULL:
                raise disk_full(self.path, e) from e
            raise

    def close(self) -> None:
        try:
            self.f.close()
        except OSError as e:  # only a line add() already reported as not written can be pending
            if e.errno not in DISK_FULL:
                raise


def summarize(rows: list[Row], **extra) -> dict:
    """Mean UNET-ZOO IoU/Dice over scored images (raw, and ×100 as the vendor prints) and counts."""
    scored = [r for r in rows if r.iou is not None]
    mean_iou = math.fsum(r.iou for r in scored) / len(scored) if scored else None
    mean_dice = math.fsum(r.dice for r in scored) / len(scored) if scored else None
    counts = Counter(r.status for r in rows)
    return {
        "images": len(rows), "scored": len(scored),
        "mean_iou": mean_iou, "mean_dice": mean_dice,
        "mean_iou_x100": None if mean_iou is None else 100 * mean_iou,
        "mean_dice_x100": None if mean_dice is None else 100 * mean_dice,
        "status_counts": dict(sorted(counts.items())),
        "empty_case": EMPTY_NOTE,
        **extra,
    }


def means_line(s: dict) -> str:
    """The vendor's closing line (×100), plus the count it is over."""
    if s["mean_iou"] is None:
        return f"no image could be scored ({s['images']} images: {_counts(s)})"
    return (f"mean DIC: {s['mean_dice_x100']:.3f}, mean IoU: {s['mean_iou_x100']:.3f} "
            f"({s['scored']} of {s['images']} images scored; GT and prediction both empty = IoU/Dice 1)")


def _counts(s: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in s["status_counts"].items()) or "none"


def problems(rows: list[Row], limit: int = 5) -> str:
    """A short report of the images that were not scored, by reason; '' when there are none."""
    bad = [r for r in rows if r.status != OK]
    if not bad:
        return ""
    by = Counter(r.status for r in bad)
    lines = [f"{len(bad)} image(s) not scored: " + ", ".join(f"{n} {k}" for k, n in sorted(by.items()))]
    lines += [f"  {r.image}: {r.status}" + (f" ({r.detail})" if r.detail else "") for r in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more (see results.csv)")
    return "\n".join(lines)


def report_hint(run_dir: str | os.PathLike) -> str:
    """The line `deploy run` and `deploy eval` end with: the command of the HTML report (html_report.py)."""
    return f"report: deploy report {run_dir} --out {Path(run_dir) / 'report'}  (add more run folders to compare them)"


def write_summary(out_dir: str | os.PathLike, summary: dict, rows: list[Row], title: str) -> dict[str, Path]:
    """summary.json, summary.md and iou_hist.png in `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    ious = [r.iou for r in rows if r.iou is not None]
    paths = {k: out_dir / name for k, name in SUMMARY_FILES.items()}
    plots.iou_histogram([(title, ious)], paths["hist"], f"{title}: per-image IoU ({len(ious)} images)")
    atomic_write_json(paths["json"], summary, default=str)
    atomic_write_text(paths["md"], _markdown(summary, rows, title))
    return paths


def write_volumes(out_dir: str | os.PathLike, volumes: dict) -> Path:
    """volumes.csv of a run's or an evaluation's volume summary (deploy.data.volume_metrics)."""
    from deploy.data.volume_metrics import volumes_csv
    return atomic_write_text(Path(out_dir) / VOLUMES, volumes_csv(volumes))


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def _markdown(s: dict, rows: list[Row], title: str) -> str:
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| mean IoU (UNET-ZOO) | {_fmt(s['mean_iou'])} |", f"| mean Dice (UNET-ZOO) | {_fmt(s['mean_dice'])} |",
              f"| images scored | {s['scored']} of {s['images']} |"]
    for k, n in s["status_counts"].items():
        lines.append(f"| status: {k} | {n} |")
    for k, v in (s.get("confusion") or {}).items():
        if k != "class_iou":
            lines.append(f"| {k} (confusion matrix) | {_fmt(v)} |")
    for k in ("throughput_ips", "elapsed_s"):
        if s.get(k) is not None:
            lines.append(f"| {k} | {_fmt(s[k])} |")
    lines += ["", f"Per-image IoU = Σpg / Σ(p+g−pg), Dice = 2Σpg / (Σp+Σg) with the GT resized to the model size "
              f"(bilinear) and binarised at ≥ 125, the prediction at ≥ {s.get('threshold', 0.5)}; {EMPTY_NOTE}.", ""]
    vols = s.get("volumes")
    if vols:
        keys = list(vols["per_case"])
        lines += [f"## Volumes ({vols['volumes']} volumes, {vols['slices']} slices; LiTS Dice)", "",
                  "| volume | " + " | ".join(f"{k} Dice" for k in keys) + " |", "|---|" + "---|" * len(keys)]
        lines += [f"| {n} | " + " | ".join(_fmt(d[k]) for k in keys) + " |" for n, d in vols["cases"].items()]
        lines += ["| **per case (mean)** | " + " | ".join(_fmt(vols["per_case"][k]) for k in keys) + " |",
                  "| **global (all voxels)** | " + " | ".join(_fmt(vols["global"][k]) for k in keys) + " |", ""]
    class_iou = (s.get("confusion") or {}).get("class_iou")
    if class_iou:
        lines += ["| class | IoU |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in enumerate(class_iou)] + [""]
    lines += ["![per-image IoU](iou_hist.png)", ""]
    worst = sorted((r for r in rows if r.iou is not None), key=lambda r: (r.iou, r.image))[:10]
    if worst:
        lines += ["## Lowest IoU", "", "| image | IoU | Dice |", "|---|---|---|"]
        lines += [f"| {r.image} | {r.iou:.4f} | {r.dice:.4f} |" for r in worst] + [""]
    bad = [r for r in rows if r.status != OK]
    if bad:
        lines += ["## Not scored", "", "| image | status | detail |", "|---|---|---|"]
        lines += [f"| {r.image} | {r.status} | {r.detail.replace('|', '/')} |" for r in bad[:50]] + [""]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats with 3 significant digits."""
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
