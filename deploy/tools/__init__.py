"""The vendor workflow's user-facing tools: `deploy run` (vsx_inference.py), `deploy image2npz`
(image2npz.py), `deploy perf` (vamp) and `deploy eval` (vamp_eval.py).

Each tool module exposes a click command `cli` and a plain function with the same options; the
metric (metrics.py), drawing (draw.py), file writing (files.py) and summaries (report.py) are
shared so that every route scores and writes the same way.
"""
