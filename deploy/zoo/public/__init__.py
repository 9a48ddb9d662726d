"""Public segmentation networks (catalogue.PUBLIC) built from their own libraries with random
weights: torchvision 0.28.0 (the release that pins torch==2.13.0) and segmentation-models-pytorch
0.6.0, the optional `zoo-public` extra. Nothing is downloaded: every constructor is called with
`weights=None` / `encoder_weights=None`.

Route (measured 2026-12-03 in a throwaway venv beside the torch 2.13.0+cpu wheel): the libraries'
own models, not re-implementations, so the graphs are exactly what a user exports. PyPI's
torchvision 0.28.0 wheel imports its `_C.so` linked against libtorch_cuda/libc10_cuda; that load
fails beside the CPU torch (torchvision then runs without its C++ ops), but its
`_meta_registrations` still registers fake kernels for `torchvision::nms`/`qnms` and the import
stops at "operator torchvision::nms does not exist". deploy.zoo.public.libraries defines those two
schemas (no kernels) and imports again. All 29 requested networks then build and run in torch
(the C++ ops are detection ops none of them calls; calling one still raises torchvision's own
error); 28 export to ONNX and make up catalogue.PUBLIC (PSPNet/efficientnet-b0 does not export:
catalogue.SMP_UNEXPORTABLE says why).

- `deploy.zoo.public.models`: `create(name, seed)` — the network in eval mode, one output tensor.
- `deploy.zoo.public.export`: `export_onnx(name, out_path, size=None, batch=1, seed=0)`.
"""
