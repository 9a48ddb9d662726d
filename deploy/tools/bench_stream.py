"""`make bench` part: the streaming pipeline's end-to-end throughput (decode, vdsp preprocessing,
inference, post-processing, writing every output) against the model-only throughput that
`deploy perf` measures, both at the same batch in one process. The pipeline overlaps decoding
with inference when the ratio is close to 1 (the bar: >= 0.9)."""
from __future__ import annotations

import shutil
from pathlib import Path

BAR = 0.9


def dataset(folder: Path, images: int) -> tuple[Path, Path]:
    """(images, masks) of a synthetic DSB2018 set of `images` images under `folder` (written anew)."""
    from deploy.data.synth import synth_dsb2018
    data = synth_dsb2018(Path(folder) / f"data_{images}", n=images)
    return data / "images", data / "masks"


def run(report_dir, prefix, vdsp_params, image_dir=None, mask_dir=None, *, batch: int = 8, images: int = 256,
        iterations: int | None = None, repeats: int = 3, num_threads: int | None = None) -> dict:
    """Measure both and return {model_only_qps, stream_ips, ratio, bar, ok, ...}; writes
    `report_dir/stream_bench.json`. Without `image_dir`, a synthetic DSB2018 set of `images` images
    (with masks) is generated in `report_dir`. Model-only runs are measured before the first stream
    and after each one; each stream is compared with the mean of the two around it, and the median
    of the `repeats` ratios is reported, so a burst of load from elsewhere moves the result less.
    `num_threads` limits the model's threads in both measurements (default: every core)."""
    from deploy.io import atomic_write_json
    from deploy.tools.common import load_model
    from deploy.tools.perf import PerfConfig, benchmark
    from deploy.tools.run import run as run_stream

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    if image_dir is None:
        image_dir, mask_dir = dataset(report_dir, images)
    cfg = PerfConfig(prefix=str(prefix), batch=batch, iterations=max(2, (iterations or images // batch) // 2),
                     warmup=2, queue_size=0, num_threads=num_threads)
    model = load_model(prefix, num_threads)
    out = report_dir / "stream_out"
    model_only = [benchmark(cfg, model=model)["throughput_qps"]]
    streams = []
    for _ in range(max(1, repeats)):
        shutil.rmtree(out, ignore_errors=True)
        streams.append(run_stream(image_dir, prefix, vdsp_params, out, mask_dir, batch=batch, workers=2,
                                  limit=images, num_threads=num_threads, progress=False))
        model_only.append(benchmark(cfg, model=model)["throughput_qps"])
    ratios = [s["throughput_ips"] * 2 / (a + b) for s, a, b in zip(streams, model_only, model_only[1:])]
    pick = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    mid = streams[pick]
    result = {"batch": batch, "images": mid["processed"], "model_threads": model.threads,
              "model_only_qps": (model_only[pick] + model_only[pick + 1]) / 2, "model_only_qps_runs": model_only,
              "stream_ips": mid["throughput_ips"],
              "stream_ips_runs": [s["throughput_ips"] for s in streams], "ratios": ratios,
              "ratio": ratios[pick], "bar": BAR, "ok": ratios[pick] >= BAR, "mean_iou": mid["mean_iou"],
              "model": str(prefix)}
    atomic_write_json(report_dir / "stream_bench.json", result)
    return result


def run_ray(report_dir, prefix, vdsp_params, image_dir, mask_dir=None, *, batch: int = 8, images: int = 256,
            workers: tuple[int, ...] = (1, 2), repeats: int = 3) -> list[dict]:
    """The Ray route (`deploy run --ray`) on one local Ray instance with each of `workers` workers (the cores
    split between them) against the local runstream (every core), in `repeats` pairs run back to back so that
    load from elsewhere hits both alike: per pair, the Ray run's images/s once its workers are up (`steady_ips`;
    starting them — importing TVM, loading the model — is `startup_s`) over the local run's images/s; the
    median pair is reported. That ratio is the per-image cost of going through Ray (bar: >= 0.9 with 1 worker).
    A Ray instance already running (started by the caller) is used as it is."""
    from deploy.host import usable_cores
    from deploy.tools.ray_run import import_ray

    ray = import_ray()
    cores = usable_cores()
    started = not ray.is_initialized()
    if started:  # one instance for every run: its start-up is not what is measured
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        return [_ray_row(Path(report_dir), prefix, vdsp_params, image_dir, mask_dir, n, cores // n, batch, images,
                         repeats) for n in workers if n <= cores]
    finally:
        if started:
            ray.shutdown()


def _ray_row(report_dir: Path, prefix, vdsp_params, image_dir, mask_dir, n: int, threads: int, batch: int,
             images: int, repeats: int) -> dict:
    """One row of run_ray: `repeats` (local run, Ray run with `n` workers of `threads` threads) pairs."""
    from deploy.tools.ray_run import LOCAL
    from deploy.tools.run import run as run_stream

    def once(route: str, **kw) -> dict:
        out = report_dir / f"ray_{n}_{route}_out"
        shutil.rmtree(out, ignore_errors=True)
        return run_stream(image_dir, prefix, vdsp_params, out, mask_dir, batch=batch, limit=images, progress=False,
                          **kw)

    pairs = [(once("local"), once("ray", num_threads=threads, ray=LOCAL)) for _ in range(max(1, repeats))]
    ratios = [(r["ray"]["steady_ips"] or 0) / local["throughput_ips"] for local, r in pairs]
    pick = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    local, on_ray = pairs[pick]
    info = on_ray["ray"]
    return {"workers": info["workers"], "model_threads": threads, "batch": batch, "images": on_ray["processed"],
            "startup_s": info["startup_s"], "steady_ips": info["steady_ips"], "local_ips": local["throughput_ips"],
            "ratio": ratios[pick], "ratios": ratios, "bar": BAR, "mean_iou": on_ray["mean_iou"],
            "same_mean_iou": all(r["mean_iou"] == lo["mean_iou"] for lo, r in pairs)}
