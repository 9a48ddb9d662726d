"""`deploy run` / `python vsx_inference.py`: segment a folder of images through the streaming
pipeline, write each image's outputs and score them against the masks (UNET-ZOO IoU/Dice).

Per image `<stem>` in `--save_dir`:
- `<stem>.npz`: the raw model outputs `output_0..N`, batch dim kept (1, ...), like vamp's files
  (`--no-npz` skips them: masks and scores only, ~150 KB less per UNet++ image — 15 GB per 100k);
- `<stem>.png`: the predicted mask at the source image's size (0/255; class ids if multi-class);
- `<stem>_model.png`: the same mask at the model's size (what is scored);
and once: `results.csv` (image, mask, status, iou, dice, detail), `run.json` (what produced them: model
sources, target and suite digests, image and mask folders, the masks' digest, vdsp params, threshold, output
index, sigmoid), `summary.json`, `summary.md`, `iou_hist.png`. Inputs whose outputs would share a name
(`a.png` + `a.jpg`, `x.png` + `x_model.png`, an image called `iou_hist.png`) are refused before anything is
written. Every file is replaced atomically and results.csv gets one flushed line per finished image, so an
interrupted run (Ctrl-C, a crash) leaves only complete outputs; `--resume` keeps the images whose outputs are
present and valid and does the rest — after checking against `run.json`
that the model, preprocessing and scoring settings are the ones those outputs were made with.

CT: `--file_path` may be a folder of LiTS volumes (`volume-<N>.nii[.gz]`, GT `segmentation-<N>` beside
them or in `--gt_path`): its axial slices are segmented as if `deploy data slices` had exported them
(deploy.tools.volumes, HU window `--hu-window`, default the liver window), with the same per-slice
outputs. Slices named `<volume>_slice-<k>` (either way) are also scored per volume as LiTS does:
`volumes.csv` (Dice per volume, per case and global, liver and tumour; deploy.data.volume_metrics,
the code `deploy eval` scores volumes with) and a table in summary.md.

Scores: those of `deploy eval` (deploy.data.metrics.score_image), at the model's size: the UNET-ZOO
IoU/Dice for a single-channel output; for a multi-channel (argmax) one, the mean over the classes
present of a class-index mask (palette PNGs read as their indices, 255 = ignore); `deploy eval
--num-classes` adds the confusion-matrix metrics over all images.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import click
import numpy as np

from deploy.errors import DeployError
from deploy.host import check_memory
from deploy.io import atomic_write_json, sha256_file, sha256_files
from deploy.runtime.suite import artifact_paths
from deploy.tools import files, report
from deploy.tools.common import (WORKERS, FiniteFloat, check_finite, check_image_model, check_outside, load_model,
                                 output_index, vdsp_preprocessor, warn_device)
from deploy.data.metrics import PRED_THRESHOLD
from deploy.data.volume_metrics import VolumeScores, volume_lines
from deploy.tools.ray_run import describe, ray_option, route
from deploy.tools.report import NO_MASK, OK, Row
from deploy.tools.segment import ImageJob, Outputs

RESULTS = report.RESULTS
SETTINGS = "run.json"


def run(image_dir, model_prefix, vdsp_params, save_dir, mask_dir=None, *, batch: int = 1, workers: int = 2,
        limit: int | None = None, mask_suffix: str | None = None, threshold: float = PRED_THRESHOLD,
        out_index: int | None = None, sigmoid: bool = False, resume: bool = False, npz: bool = True,
        num_threads: int | None = None, progress: bool | None = None, verbose: bool = False,
        ray: str | None = None, hu_window: tuple[float, float] | None = None) -> dict:
    """Run the pipeline; returns the summary dict (also written to `save_dir`/summary.json).
    `ray`: run on a Ray cluster instead (deploy.tools.ray_run: "local" starts one, else its address).
    `image_dir` may be a folder of CT volumes (see the module doc); `hu_window` applies only there."""
    check_finite("threshold", threshold)
    check_outside(save_dir, "--save_dir", image=image_dir, mask=mask_dir)
    _, pre = vdsp_preprocessor(vdsp_params)
    samples, images_identity = _samples(image_dir, mask_dir, mask_suffix, hu_window)
    masks_identity = {"path": None if mask_dir is None else str(Path(mask_dir).resolve()),
                      "sha256": sha256_files(dict.fromkeys(s.mask for s in samples if s.mask is not None))}
    if limit is not None:
        samples = samples[:max(0, limit)]
    files.refuse_collisions(save_dir, {str(s.image): Outputs.of(Path(), s.image.stem).names() for s in samples},
                            (RESULTS, SETTINGS, report.VOLUMES, *report.SUMMARY_FILES.values()))

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(model_prefix, num_threads)
    check_image_model(model, pre.out_size, f"{model_prefix}")
    check_memory(batch * sum(4 * float(np.prod([d for d in t.shape[1:] if isinstance(d, int)]))
                             for t in (*model.inputs, *model.outputs)) * 2,
                 f"--batch {batch}", "use a smaller --batch")
    idx = output_index(model, out_index)
    keys = tuple(f"output_{i}" for i in range(len(model.outputs))) if npz else ()

    settings = {"model": _model_identity(model), "images": images_identity,
                "masks": masks_identity, "vdsp_params": json.loads(Path(vdsp_params).read_text()),
                "threshold": threshold, "output_index": idx, "sigmoid": sigmoid}
    if resume:
        _check_settings(save_dir / SETTINGS, settings)
    atomic_write_json(save_dir / SETTINGS, settings)
    kept: dict[str, Row] = {}
    if resume:  # done: scored, or unscorable for want of a mask that is still missing
        has_mask = {s.image.name: s.mask is not None for s in samples}
        for name, row in report.read_rows(save_dir / RESULTS).items():
            done = row.status == OK or (row.status == NO_MASK and not has_mask.get(name, True))
            if done and name in has_mask and Outputs.of(save_dir, Path(name).stem).valid(keys):
                kept[name] = row
    todo = [s for s in samples if s.image.name not in kept]
    rows = [kept[s.image.name] for s in samples if s.image.name in kept]
    if resume:
        click.echo(f"resume: {len(rows)} image(s) already done, {len(todo)} to do", err=True)

    job = ImageJob(pre, idx, threshold, sigmoid, npz)
    volumes = VolumeScores()
    binary = _binary_output(model.outputs[idx].shape)
    for s in samples:
        if s.image.name in kept and kept[s.image.name].status == OK:
            overlaps = job.rescore(s, save_dir, binary)
            if overlaps is not None:
                volumes.add(s.image.name, overlaps)
    results, cluster = route(job, model, todo, save_dir, batch=batch, workers=workers, num_threads=num_threads,
                             ray=ray)
    appender = report.RowAppender(save_dir / RESULTS, rows)
    from tqdm import tqdm
    bar = tqdm(total=len(todo), unit="img", disable=(None if progress is None else not progress), leave=False)
    new = 0
    t0 = time.perf_counter()
    try:
        for rendered in results:
            row = rendered.row
            if rendered.overlaps is not None:
                volumes.add(row.image, rendered.overlaps)
            appender.add(row)
            rows.append(row)
            new += 1
            bar.update()
            if verbose and row.iou is not None:
                click.echo(f"{row.image}, validation DIC: {row.dice * 100:.3f}, IoU: {row.iou * 100:.3f}")
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted after {new} of {len(todo)} image(s); the outputs written so far are complete: "
                   f"rerun with --resume to finish", err=True)
        raise
    finally:
        bar.close()
        results.close()  # stops the stream's threads (or the cluster's workers) now, also on an error
        appender.close()
    elapsed = time.perf_counter() - t0

    report.write_rows(save_dir / RESULTS, rows)
    summary = report.summarize(
        rows, model=str(model_prefix), vdsp_params=str(vdsp_params), batch=batch, workers=workers,
        threshold=threshold, output_index=idx, npz=npz, resumed=len(kept), processed=new, elapsed_s=elapsed,
        throughput_ips=(new / elapsed if new and elapsed > 0 else None), image_dir=str(Path(image_dir).resolve()),
        mask_dir=str(Path(mask_dir).resolve()) if mask_dir else None, volumes=volumes.summary(),
        **({"ray": cluster.info} if cluster else {}))
    report.write_summary(save_dir, summary, rows, f"deploy run: {Path(model_prefix)}")
    click.echo(report.means_line(summary))
    if summary["volumes"] is not None:
        report.write_volumes(save_dir, summary["volumes"])
        for line in volume_lines(summary["volumes"]):
            click.echo(line)
    if new:
        click.echo(f"throughput: {new / elapsed:.2f} images/s ({new} images in {elapsed:.2f} s, batch {batch}, "
                   f"{workers} reader threads)")
    if cluster:
        click.echo(describe(cluster.info))
    issues = report.problems(rows)
    if issues:
        click.echo(issues, err=True)
    click.echo(report.report_hint(save_dir))
    return summary


def _samples(image_dir, mask_dir, mask_suffix: str | None, hu_window: tuple[float, float] | None
             ) -> tuple[list, dict]:
    """The samples of a run and what run.json records of their source: image files paired with their
    masks, or the slices of a folder of CT volumes."""
    from deploy.data.ct_slices import is_volume_folder
    from deploy.data.nifti import LIVER_WINDOW
    from deploy.data.readers import DataWarning, pair_masks

    volume_folder = is_volume_folder(image_dir)
    if not volume_folder and hu_window is not None:
        raise DeployError(f"--hu-window applies to a folder of CT volumes (volume-<N>.nii[.gz]); {image_dir} "
                          "has none")
    if volume_folder and mask_suffix is not None:
        raise DeployError(f"--mask-suffix: {image_dir} holds CT volumes, whose masks are the "
                          "segmentation-<N>.nii[.gz] files")
    # absolute paths: a Ray worker on another machine does not start in this working folder
    image_dir, mask_dir = Path(image_dir).absolute(), None if mask_dir is None else Path(mask_dir).absolute()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        if volume_folder:
            from deploy.tools.volumes import slice_samples
            hu_window = tuple(hu_window or LIVER_WINDOW)
            samples = slice_samples(image_dir, mask_dir, hu_window)
        else:
            samples = pair_masks(image_dir, mask_dir, mask_suffix)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    identity = {"path": str(Path(image_dir).resolve())}
    if volume_folder:
        identity["hu_window"] = list(hu_window)
    return samples, identity


def _binary_output(shape) -> bool:
    """Whether a model output of `shape` is one probability map (deploy.data.metrics.predict's rule)."""
    return len(shape) < 4 or shape[1] == 1


def _model_identity(model) -> dict:
    """What run.json records of the model: its sources and target, and the digests of both suite
    files (mod.so's as its description records it, checked at load), so a suite rebuilt from the same
    sources (another --target, another TVM) is told apart."""
    description = artifact_paths(model.prefix)[1]
    return {**{k: model.meta.get(k) for k in ("name", "dtype", "sources", "target", "library_sha256")},
            "description_sha256": sha256_file(description)}


def _differences(before: dict, now: dict) -> list[str]:
    """The settings that differ, as dotted keys one level down (`masks.sha256`, `model.target`)."""
    out = []
    for key in sorted(set(before) | set(now)):
        b, n = before.get(key), now.get(key)
        if isinstance(b, dict) and isinstance(n, dict):
            out += [f"{key}.{sub}" for sub in sorted(set(b) | set(n)) if b.get(sub) != n.get(sub)]
        elif b != n:
            out.append(key)
    return out


def _check_settings(path: Path, now: dict) -> None:
    """Resuming with another model (sources, target or suite files), image or mask folder, mask content,
    preprocessing or scoring setting would mix two runs in one results.csv."""
    if not path.is_file():
        if (path.parent / RESULTS).is_file():
            click.echo(f"warning: {path} is missing, so --resume cannot check that the earlier outputs were made "
                       "with this model and these settings", err=True)
        return
    try:
        before = json.loads(path.read_text())
    except ValueError as e:
        raise DeployError(f"{path}: unreadable ({e}); delete it to resume without the check") from None
    changed = _differences(before, now)
    if changed:
        raise DeployError(f"--resume: {', '.join(changed)} differ(s) from the run that wrote {path.parent} "
                          f"(see {path}); use another --save_dir, or run without --resume to start over")


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--file_path", "--image_dir", "image_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of images to segment.")
@click.option("--gt_path", "--mask_dir", "mask_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of ground-truth masks (layout detected: DSB2018, portrait, Carvana).")
@click.option("--model_prefix_path", "-m", "model_prefix", required=True,
              help="Compiled model prefix, e.g. deploy_weights/official_unetpp_int8/mod.")
@click.option("--vdsp_params_info", "--vdsp_params", "vdsp_params", required=True, type=click.Path(dir_okay=False),
              help="vdsp_params JSON (the preprocessing op).")
@click.option("--device_id", "--device", "device", default="0", show_default=True,
              help="Vendor device id; accepted for compatibility (the host runs the model).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Images per inference.")
@click.option("--save_dir", type=click.Path(file_okay=False), default="./vsx_results", show_default=True,
              help="Where outputs, results.csv and the summary go.")
@click.option("--workers", type=WORKERS, default=2, show_default=True,
              help="Reader threads (decode + preprocess) and writer threads.")
@click.option("--limit", type=click.IntRange(0), default=None, help="Only the first N images (sorted by name).")
@click.option("--mask-suffix", "mask_suffix", default=None,
              help="Mask name suffix when the layout is not detected, e.g. _mask.gif.")
@click.option("--threshold", type=FiniteFloat(), default=PRED_THRESHOLD, show_default=True,
              help="Foreground when the probability is >= this.")
@click.option("--output-index", "out_index", type=click.IntRange(0), default=None,
              help="Which model output is the prediction [default: mod.json main_output, else 0].")
@click.option("--sigmoid", is_flag=True, help="Apply a sigmoid to the output (models that end in logits).")
@click.option("--resume", is_flag=True, help="Keep images whose outputs are already complete; do the rest.")
@click.option("--npz/--no-npz", default=True, show_default=True,
              help="Write each image's raw outputs as <stem>.npz (--no-npz: masks and scores only).")
@click.option("--num-threads", "num_threads", type=click.IntRange(1), default=None,
              help="Threads the model may use [default: all cores].")
@click.option("--progress/--no-progress", default=None, help="Progress bar [default: when stderr is a terminal].")
@click.option("-v", "--verbose", is_flag=True, help="Print each image's Dice and IoU, as the vendor script does.")
@click.option("--hu-window", "hu_window", nargs=2, type=FiniteFloat(), default=None, metavar="LOW HIGH",
              help="CT volumes (--file_path a folder of volume-N.nii[.gz]): the HU window mapped onto 0..255 "
                   "[default: the liver window -200 250].")
@ray_option
def cli(image_dir, mask_dir, model_prefix, vdsp_params, device, batch, save_dir, workers, limit, mask_suffix,
        threshold, out_index, sigmoid, resume, npz, num_threads, progress, verbose, hu_window, ray):
    """Segment images with a compiled model and score them (vendor: vsx_inference.py)."""
    warn_device(device)
    run(image_dir, model_prefix, vdsp_params, save_dir, mask_dir, batch=batch, workers=workers, limit=limit,
        mask_suffix=mask_suffix, threshold=threshold, out_index=out_index, sigmoid=sigmoid, resume=resume,
        npz=npz, num_threads=num_threads, progress=progress, verbose=verbose, ray=ray, hu_window=hu_window)
