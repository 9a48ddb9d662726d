"""int8 calibration and quantization planning.

`plan(cfg, model, cache_dir, recalibrate=False) -> QuantPlan` is the entry point the compiler's
int8 path uses; `deploy.quantize.qdq` writes the plan as a QDQ ONNX model onnxruntime can run.
Modules: histogram (streaming |x| histograms), thresholds (calibrate_mode searches), collect
(onnxruntime activation capture), calibrate (dataset → thresholds), weights, graph, cache
(calibration.json), planner (skip rules, scales), qdq (ONNX writers).
"""
from deploy.quantize.planner import ActivationQuant, ConvQuant, QuantizeWarning, QuantPlan, plan

__all__ = ["plan", "QuantPlan", "ActivationQuant", "ConvQuant", "QuantizeWarning"]
