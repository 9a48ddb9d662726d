"""Typed, validated configs parsed once at the edge (build YAML, vdsp JSON)."""
from deploy.config.build import (CALIBRATE_MODES, DTYPES, Backend, BuildConfig, Dataset, Frontend, Quantize,
                                 load_build_config)
from deploy.config.ops import NORMA_TYPES, RESIZE_TYPES
from deploy.config.reader import UnknownKeyWarning
from deploy.config.vdsp import VdspConfig, load_vdsp_config

__all__ = ["BuildConfig", "Frontend", "Backend", "Quantize", "Dataset", "VdspConfig", "load_build_config",
           "load_vdsp_config", "DTYPES", "CALIBRATE_MODES", "NORMA_TYPES", "RESIZE_TYPES", "UnknownKeyWarning"]
