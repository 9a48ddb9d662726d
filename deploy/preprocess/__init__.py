"""Preprocessing: one implementation behind the build YAML's process_ops and the vdsp JSON."""
from deploy.preprocess.check import Comparison, compare_preprocess
from deploy.preprocess.pipeline import Preprocessor, planar_to_hwc
from deploy.preprocess.resize import resize

__all__ = ["Preprocessor", "planar_to_hwc", "resize", "compare_preprocess", "Comparison"]
