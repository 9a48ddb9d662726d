"""`make bench`, runstream part: end-to-end images/s of `deploy run` at batch 8 against the
model-only throughput `deploy perf` measures (bar: ≥ 90 %), on UNet++ fp32.

Two rows: the model on every core (the bar), and the model on one core fewer, which leaves a
core to decoding/writing and so shows whether they overlap inference. With every core busy in
the model, the pipeline's own CPU work (PNG decode, npz/PNG writes) can only take cycles from
it; the first row then measures how small that work is, the second how well it overlaps.

Then the Ray route (`deploy run --ray`, when the `cluster` extra is installed) on a local Ray
instance with 1 and 2 workers, each run paired with a local runstream run just before it: its
images/s once the workers are up, whose ratio to the local runstream is the per-image cost of going
through Ray (bar: >= 90 % with 1 worker). `--only ray` (deploy.bench.ray) measures that part alone."""
from __future__ import annotations

from pathlib import Path

from deploy.bench import models, report
from deploy.catalogue import MODELS
from deploy.errors import DeployError
from deploy.host import usable_cores
from deploy.tools import bench_stream
from deploy.tools.ray_run import import_ray
from deploy.tools.report import markdown_table

MODEL = "unetpp"
REPEATS = 5  # paired runs per row; single runs on the 2-core machine spread over ±4-8 %


def inputs(work: Path, runs: int) -> tuple[Path, Path, tuple[Path, Path], int]:
    """(compiled UNet++ fp32 prefix, its vdsp JSON, (images, masks), image count): what every row runs."""
    from deploy.compiler import compile_build
    onnx_path = models.bench_onnx(MODEL, work)
    prefix = compile_build(models.bench_config(MODEL, onnx_path, work, "fp32"), progress=False)
    images = max(128, 8 * runs)
    return prefix, MODELS[MODEL].vdsp_json, bench_stream.dataset(work / "stream", images), images


def ray_rows(work: Path, prefix: Path, vdsp: Path, data: tuple[Path, Path], batch: int, images: int) -> list | str:
    """The Ray rows, or why there are none (the cluster extra is not installed)."""
    try:
        import_ray()
    except DeployError as e:
        return str(e)
    return bench_stream.run_ray(work / "stream", prefix, vdsp, *data, batch=batch, images=images, repeats=REPEATS)


def run(work: Path, batches=(8,), runs: int = 20) -> dict:
    prefix, vdsp, data, images = inputs(work, runs)  # one set for every row
    threads = [None] + ([usable_cores() - 1] if usable_cores() > 1 else [])
    rows = [bench_stream.run(work / "stream" / f"threads_{n or 'all'}", prefix, vdsp, *data, batch=max(batches),
                             images=images, repeats=REPEATS, num_threads=n) for n in threads]
    return {"machine": report.machine(), "rows": rows, "ray": ray_rows(work, prefix, vdsp, data, max(batches), images)}


def markdown(result: dict) -> str:
    rows = [[r["model"], r["model_threads"], r["batch"], r["images"], f"{r['model_only_qps']:.1f}",
             f"{r['stream_ips']:.1f}", f"{100 * r['ratio']:.1f}%", " ".join(f"{100 * x:.0f}%" for x in r["ratios"]),
             "yes" if r["ok"] else "NO"] for r in result["rows"]]
    m = result["machine"]
    return _local_markdown(rows, m, result["rows"][0]["bar"]) + "\n\n" + _ray_markdown(result.get("ray"))


def _local_markdown(rows: list[list], m: dict, bar: float) -> str:
    return ("# Runstream benchmark\n\nEnd-to-end `deploy run` (decode, vdsp preprocessing, inference, post, writing) "
            f"vs model-only `deploy perf` throughput, {m['cpu']}, {m['cores']} cores. Ratio: median of the paired "
            "runs listed.\n\n"
            + markdown_table(["model", "model threads", "batch", "images", "model-only img/s", "runstream img/s",
                            "ratio", "runs", f"≥ {100 * bar:.0f}%"], rows))


def _ray_markdown(ray_rows: list[dict] | str | None) -> str:
    if not isinstance(ray_rows, list):
        return f"## Ray route\n\nnot measured: {ray_rows or 'no Ray rows in this result'}"
    rows = [[r["workers"], r["model_threads"], r["batch"], r["images"], f"{r['startup_s']:.1f}",
             "–" if r["steady_ips"] is None else f"{r['steady_ips']:.1f}", f"{r['local_ips']:.1f}",
             f"{100 * r['ratio']:.1f}%", " ".join(f"{100 * x:.0f}%" for x in r["ratios"]),
             "–" if r["workers"] > 1 else "yes" if r["ratio"] >= r["bar"] else "NO"] for r in ray_rows]
    bar = f"≥ {100 * bench_stream.BAR:.0f}% (1 worker)"
    return ("## Ray route\n\n`deploy run --ray` on a local Ray instance (the cores split between the workers) vs the "
            "local runstream (every core), run in pairs back to back; Ray img/s after the first chunk (the workers' "
            "start-up apart), ratio: the median pair of the runs listed.\n\n"
            + markdown_table(["Ray workers", "model threads each", "batch", "images", "start-up s (workers)",
                            "Ray img/s", "local img/s", "ratio", "runs", bar], rows))
