"""Frontends: what `frontend.type` names → the ONNX model the compiler prepares and imports.

`load_source(cfg)` (deploy.frontend.source) reads an ONNX checkpoint as it is, converts a PyTorch
one (deploy.frontend.pytorch, torch imported only then) and refuses other vendor types with the
conversion route to ONNX. Below the compiler and `deploy analyze`, which both need the model;
`deploy check-preprocess` never loads it, so it accepts every type.
"""
