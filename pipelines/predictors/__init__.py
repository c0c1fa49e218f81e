"""Predictors: turn a folder of inputs into predictions with a trained bundle's network (:class:`FolderPredictor`
and its per-method subclasses), and the names of saved predictions."""

from __future__ import annotations

from .folder import (
    IMAGE_EXTENSIONS,
    FolderPredictor,
    LANetPredictor,
    PredictionSummary,
    infer_folder,
    list_input_images,
    load_input_image,
)
from .naming import brats_output_name

__all__ = [
    'IMAGE_EXTENSIONS',
    'FolderPredictor',
    'LANetPredictor',
    'PredictionSummary',
    'brats_output_name',
    'infer_folder',
    'list_input_images',
    'load_input_image',
]
