"""Compiler backends: target-specific Relax optimisation applied after the ONNX import.

`cpu` is the fast TVM CPU path (NHWC layout, packed-weight conv kernels, hand schedules)."""
