"""`deploy eval` / `python vamp_eval.py`: pair model outputs with the datalist's inputs, draw, score.

Pairing: datalist line i (an input npz `<stem>.npz`) ↔ with `--vamp_flag`, `OUT/output_{i:06d}.npz`
(vamp's accuracy mode, by position); without it (the default), `OUT/<stem>.npz` (by input name, as
`deploy run` writes). The source image and mask of `<stem>` are found in `--src_dir`/`--gt_dir` with
the same layout detection as `deploy run`.

Scores: the UNET-ZOO per-image IoU/Dice (deploy.data.metrics) for a single-channel (probability)
output, and the pixel confusion matrix over all images (overall/mean/FreqW accuracy, mean IoU): for
a binary model over {background, foreground}; for a multi-class output (C > 1 channels, argmax;
`--num-classes`) over the classes of a class-index GT (255 = ignore), where the per-image IoU/Dice
is the mean over the classes present in that image's GT or prediction. Slices named
`<volume>_slice-<k>` (`deploy data slices`) are also scored per volume as LiTS does: Dice per case
and global Dice for the liver and, for a liver/tumour model, the tumour (deploy.data.volume_metrics).

`--draw_dir` gets, per image, `<stem>.png` (the predicted mask at model size, as the vendor script
writes) and `<stem>_overlay.png` (the prediction blended on the source image, GT contour green,
prediction contour red), and once results.csv, summary.json, summary.md and iou_hist.png (CT slices
also volumes.csv and `volumes/<volume>.png`, a few slices per volume side by side: deploy.tools.volumes); a datalist
whose drawings would share a name (`x` + `x_overlay`, two `z.npz` in other folders) is refused up front.
"""
from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from deploy.errors import DeployError
from deploy.tools import draw, files, report
from deploy.tools.common import (WORKERS, FiniteFloat, check_finite, check_outside, main_output_index,
                                 read_datalist)
from deploy.data.metrics import PRED_THRESHOLD, ConfusionMatrix, binarize_gt, label_gt, predict, score_image
from deploy.data.volume_metrics import VolumeScores, slice_overlaps, volume_lines
from deploy.tools.report import BAD_MASK, MISSING_OUTPUT, NO_MASK, OK, Row


def _ordered(pool: ThreadPoolExecutor, fn, items: list, window: int):
    """`fn(i, item)` for each item on the pool, results in order, at most `window` in flight."""
    pending: deque = deque()
    for i, item in enumerate(items):
        pending.append(pool.submit(fn, i, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _drawings(stem: str) -> tuple[str, str]:
    """The files `--draw_dir` gets for one input: its mask and its overlay."""
    return f"{stem}.png", f"{stem}_overlay.png"


def evaluate(datalist, out_npz_dir, src_dir=None, gt_dir=None, draw_dir=None, *, vamp_flag: bool = False,
             input_shape: tuple[int, int] | None = None, num_classes: int | None = None,
             threshold: float = PRED_THRESHOLD, out_index: int | None = None, sigmoid: bool = False,
             mask_suffix: str | None = None, workers: int = 2, verbose: bool = False,
             model_prefix=None) -> dict:
    """Score (and draw); returns the summary dict (also written to `draw_dir` when given).

    The prediction is `output_{out_index}`; by default the `main_output` of the model at
    `model_prefix` (its mod.json, when given), else output_0."""
    from deploy.data.image import ImageReadError, read_gt, read_image_rgb
    from deploy.data.readers import DataWarning, pair_masks
    from deploy.runtime import read_meta

    check_finite("threshold", threshold)
    entries = read_datalist(datalist)
    if out_index is None:
        out_index = main_output_index(read_meta(model_prefix)) if model_prefix else 0
    out_dir = Path(out_npz_dir)
    if not out_dir.is_dir():
        raise DeployError(f"--out_npz_dir {out_dir} is not a directory")
    if gt_dir is not None and src_dir is None:
        raise DeployError("--gt_dir needs --src_dir: masks are paired with the source images by name")
    by_stem = {}
    if src_dir is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # reported per image below
            by_stem = {s.image.stem: s for s in pair_masks(src_dir, gt_dir, mask_suffix)}
    drawn = Path(draw_dir) if draw_dir else None
    if drawn:
        check_outside(drawn, "--draw_dir", source=src_dir, mask=gt_dir, output=out_dir)
        files.refuse_collisions(drawn, {str(e): _drawings(e.stem) for e in entries},
                                (report.RESULTS, report.VOLUMES, *report.SUMMARY_FILES.values()))
        drawn.mkdir(parents=True, exist_ok=True)
    shape_notes: set = set()

    def one(i: int, entry: Path):
        stem = entry.stem
        name = by_stem[stem].image.name if stem in by_stem else entry.name
        out_path = out_dir / (f"output_{i:06d}.npz" if vamp_flag else entry.name)
        try:
            arr = files.read_npz(out_path, [f"output_{out_index}"], "output")[0].astype(np.float32)
        except DeployError as e:
            return Row(name, MISSING_OUTPUT, detail=str(e)), None
        arr = arr[0] if arr.ndim == 4 else arr
        pred = predict(arr, threshold, sigmoid)
        size = pred.labels.shape
        if input_shape is not None and tuple(input_shape) != size:
            shape_notes.add(f"outputs are {size[0]}x{size[1]}, --input_shape says {input_shape[0]}x{input_shape[1]}; "
                            "scored at the output's size")
        binary = pred.prob is not None
        sample = by_stem.get(stem)
        gt = None
        row = Row(name, NO_MASK)
        if sample is not None and sample.mask is not None:
            try:
                gt = read_gt(sample.mask, binary)
            except ImageReadError as e:
                row = Row(name, BAD_MASK, mask=sample.mask.name, detail=str(e))
        elif src_dir is not None and sample is None:
            row = Row(name, NO_MASK, detail=f"no source image for {stem} in {src_dir}")
        gt_model = None
        if gt is not None:
            iou, dice, gt_model = score_image(pred, gt, num_classes)
            row = Row(name, OK, iou, dice, mask=sample.mask.name)
        if drawn:
            mask_name, overlay_name = _drawings(stem)
            files.save_image(drawn / mask_name, draw.mask_image(pred.labels, binary))
            if sample is not None:
                try:
                    img = read_image_rgb(sample.image)
                except ImageReadError as e:
                    row = replace(row, detail=f"not drawn: {e}")
                else:
                    h, w = img.shape[:2]
                    gt_fg = None
                    if gt is not None and binary:
                        gt_fg = binarize_gt(gt, (h, w))
                    elif gt is not None:
                        labels = label_gt(gt, (h, w))
                        gt_fg = (labels > 0) & (labels != 255)
                    files.save_image(drawn / overlay_name,
                                     draw.overlay(img, pred.labels_at((h, w)), gt_fg), rgb=True)
        return row, (pred.labels, gt_model, 2 if binary else (num_classes or pred.classes), binary)

    rows: list[Row] = []
    confusion: ConfusionMatrix | None = None
    volumes = VolumeScores()
    ct_slices: dict = {}  # scored CT slice name → its overlaps (the montages pick slices by them)
    from tqdm import tqdm
    with ThreadPoolExecutor(workers) as pool:
        for row, scored in tqdm(_ordered(pool, one, entries, 4 * workers), total=len(entries), unit="img",
                                leave=False, disable=None):
            rows.append(row)
            if verbose and row.iou is not None:
                click.echo(f"{row.image}, validation DIC: {row.dice * 100:.3f}, IoU: {row.iou * 100:.3f}")
            if scored is not None and scored[1] is not None:
                labels, gt_model, k, binary = scored
                if confusion is None:
                    confusion = ConfusionMatrix(k, ignore_index=None if binary else 255)
                confusion.update(labels, gt_model)
                overlaps = slice_overlaps(labels, gt_model, binary)
                if volumes.add(row.image, overlaps):
                    ct_slices[row.image] = overlaps
    for note in sorted(shape_notes):
        click.echo(f"note: {note}", err=True)
    summary = report.summarize(rows, datalist=str(datalist), out_npz_dir=str(out_dir),
                               match="position (output_%06d.npz)" if vamp_flag else "input name (<stem>.npz)",
                               threshold=threshold, output_index=out_index,
                               confusion=confusion.scores() if confusion else None,
                               image_dir=src_dir and str(Path(src_dir).resolve()),
                               mask_dir=gt_dir and str(Path(gt_dir).resolve()), volumes=volumes.summary())
    if drawn:
        report.write_rows(drawn / report.RESULTS, rows)
        report.write_summary(drawn, summary, rows, f"deploy eval: {out_dir}")
        if summary["volumes"] is not None:
            from deploy.tools.volumes import write_montages
            report.write_volumes(drawn, summary["volumes"])
            write_montages(drawn, ct_slices, summary["volumes"], lambda stem: _drawings(stem)[1])
    click.echo(report.means_line(summary))
    if confusion is not None:
        c = summary["confusion"]
        click.echo(f"Overall Acc: {c['overall_acc']:.6f}, Mean Acc: {c['mean_acc']:.6f}, "
                   f"FreqW Acc: {c['freqw_acc']:.6f}, Mean IoU: {c['mean_iou']:.6f} (confusion matrix, all pixels)")
    if summary["volumes"] is not None:
        for line in volume_lines(summary["volumes"]):
            click.echo(line)
    issues = report.problems(rows)
    if issues:
        click.echo(issues, err=True)
    if drawn:
        click.echo(report.report_hint(drawn))
    return summary


@click.command("eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--src_dir", type=click.Path(file_okay=False), default=None, help="Source images (drawing, pairing).")
@click.option("--gt_dir", type=click.Path(file_okay=False), default=None, help="Ground-truth masks.")
@click.option("--input_npz_path", required=True, type=click.Path(dir_okay=False),
              help="The datalist image2npz wrote (one input npz per line).")
@click.option("--out_npz_dir", required=True, type=click.Path(file_okay=False), help="The model outputs.")
@click.option("--input_shape", nargs=2, type=int, default=None, help="Model input H W, e.g. 96 96 (checked).")
@click.option("--draw_dir", type=click.Path(file_okay=False), default="./npz_draw_result", show_default=True,
              help="Drawings, results.csv and the summary.")
@click.option("--vamp_flag/--no-vamp_flag", default=False, show_default=True,
              help="Match outputs by position (output_%06d.npz) instead of by input name.")
@click.option("--num-classes", "num_classes", type=click.IntRange(2), default=None,
              help="Classes of a multi-channel output [default: its channel count].")
@click.option("--threshold", type=FiniteFloat(), default=PRED_THRESHOLD, show_default=True)
@click.option("--output-index", "out_index", type=click.IntRange(0), default=None,
              help="Which output_N is the prediction [default: -m's main_output, else 0].")
@click.option("-m", "--model_prefix", "model_prefix", default=None,
              help="The compiled model (…/mod): its mod.json names the prediction output.")
@click.option("--sigmoid", is_flag=True, help="Apply a sigmoid to the output (models that end in logits).")
@click.option("--mask-suffix", "mask_suffix", default=None, help="Mask name suffix when the layout is not detected.")
@click.option("--workers", type=WORKERS, default=2, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Print each image's Dice and IoU.")
def cli(src_dir, gt_dir, input_npz_path, out_npz_dir, input_shape, draw_dir, vamp_flag, num_classes, threshold,
        out_index, model_prefix, sigmoid, mask_suffix, workers, verbose):
    """Score model outputs against masks and draw them (vendor: vamp_eval.py)."""
    evaluate(input_npz_path, out_npz_dir, src_dir, gt_dir, draw_dir, vamp_flag=vamp_flag,
             input_shape=tuple(input_shape) if input_shape else None, num_classes=num_classes,
             threshold=threshold, out_index=out_index, sigmoid=sigmoid, mask_suffix=mask_suffix,
             workers=workers, verbose=verbose, model_prefix=model_prefix)
