"""`make bench` part: the streaming pipeline's end-to-end throughput (decode, vdsp preprocessing,
inference, post-processing, writing every output) against the model-only throughput that
`deploy perf` measures, both at the same batch in one process. The pipeline overlaps decoding
with inference when the ratio is close to 1 (the bar: >= 0.9)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

BAR = 0.9


def run(report_dir, prefix, vdsp_params, image_dir=None, mask_dir=None, *, batch: int = 8, images: int = 256,
        iterations: int | None = None) -> dict:
    """Measure both and return {model_only_qps, stream_ips, ratio, bar, ok, ...}; writes
    `report_dir/stream_bench.json`. Without `image_dir`, a synthetic DSB2018 set of `images` images
    (with masks) is generated in `report_dir`. The model-only figure is the mean of one measurement
    before and one after the stream, so a change in the machine's load during the run shows less."""
    from deploy.tools import files
    from deploy.tools.common import load_model
    from deploy.tools.perf import PerfConfig, benchmark
    from deploy.tools.run import run as run_stream

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    if image_dir is None:
        from deploy.data.synth import synth_dsb2018
        data = synth_dsb2018(report_dir / f"data_{images}", n=images)
        image_dir, mask_dir = data / "images", data / "masks"
    cfg = PerfConfig(prefix=str(prefix), batch=batch, iterations=max(2, (iterations or images // batch) // 2),
                     warmup=2, queue_size=0)
    model = load_model(prefix)
    before = benchmark(cfg, model=model)["throughput_qps"]
    out = report_dir / "stream_out"
    shutil.rmtree(out, ignore_errors=True)
    stream = run_stream(image_dir, prefix, vdsp_params, out, mask_dir, batch=batch, workers=2, limit=images,
                        progress=False)
    after = benchmark(cfg, model=model)["throughput_qps"]
    model_only = (before + after) / 2
    ratio = stream["throughput_ips"] / model_only
    result = {"batch": batch, "images": stream["processed"], "model_only_qps": model_only,
              "model_only_qps_before_after": [before, after],
              "stream_ips": stream["throughput_ips"], "ratio": ratio, "bar": BAR, "ok": ratio >= BAR,
              "mean_iou": stream["mean_iou"], "model": str(prefix)}
    files.write_text(report_dir / "stream_bench.json", json.dumps(result, indent=2) + "\n")
    return result
