"""Datasets: image/mask decoding, the vendor folder layouts, calibration sampling, synthetic sets.

Submodules are imported directly (`from deploy.data.image import read_image_rgb`); this package
imports nothing heavy on its own.
"""
