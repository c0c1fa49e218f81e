"""Predictors: turn a folder of inputs into predictions with a trained bundle's network."""

from __future__ import annotations

from .folder import IMAGE_EXTENSIONS, infer_folder, list_input_images, load_input_image
from .naming import brats_output_name

__all__ = ['IMAGE_EXTENSIONS', 'brats_output_name', 'infer_folder', 'list_input_images', 'load_input_image']
