"""segdeploy: an open, TVM-based re-implementation of a vendor's segmentation deploy workflow."""

__version__ = "0.1.0"
