"""Model zoo (optional `zoo` extra: PyTorch): the seed segmentation networks written from their
architecture description, a small CPU trainer, and the ONNX exporter that feeds `deploy compile`.

- `deploy.zoo.models`: `create(name, width)`, `INPUT_SIZE`, `NAMES`, exact `PARAMS` counts.
- `deploy.zoo.export`: `export_onnx(name, out_path, weights=None, width=1.0, batch=1, seed=0)`.
- `deploy.zoo.train`: `train(name, data_dir, out_dir, steps, batch, seed, width, lr, size)`.
- `deploy.zoo.prepare`: `prepare(name, out_dir)` — the cached "embedded default" ONNX per model.
- the UNET-ZOO metric used for held-out scores is deploy.data.metrics (shared with the tools).

Nothing is imported here, so `deploy zoo --help` works without torch installed.
"""
