"""The vendor workflow's user-facing tools: `deploy run` (run.py, vsx_inference.py), `deploy
image2npz` (image2npz.py), `deploy perf` (perf.py, vamp) and `deploy eval` (evaluate.py,
vamp_eval.py); `make demo` (demo.py) runs them all, bench_stream.py measures `deploy run` against
`deploy perf`.

Each tool module exposes a click command `cli` and a plain function with the same options. The
metric (deploy.data.metrics), drawing (draw.py), output files (files.py over deploy.io), summaries
and Markdown tables (report.py) and model loading / option checks (common.py) are shared, so that
every route scores and writes the same way.
"""
