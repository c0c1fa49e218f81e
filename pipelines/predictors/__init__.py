"""Predictors: turn a folder of inputs into predictions with a trained bundle's network (:class:`FolderPredictor`
and its per-method subclasses), and the names of saved predictions."""

from __future__ import annotations

from .cxr import CXRPredictor
from .folder import (
    IMAGE_EXTENSIONS,
    FolderPredictor,
    LANetPredictor,
    PredictionSummary,
    infer_folder,
    list_input_images,
    load_input_image,
)
from .joint_segcls import JointSegClsPredictor, save_joint_segcls_figure
from .lung_boxes import compute_lung_boxes, lung_boxes_from_masks
from .naming import brats_output_name
from .segmentation import SegmentationFolderPredictor, foreground_probability

__all__ = [
    'CXRPredictor',
    'IMAGE_EXTENSIONS',
    'FolderPredictor',
    'LANetPredictor',
    'PredictionSummary',
    'SegmentationFolderPredictor',
    'brats_output_name',
    'compute_lung_boxes',
    'lung_boxes_from_masks',
    'foreground_probability',
    'infer_folder',
    'list_input_images',
    'load_input_image',
]
__all__ += ['JointSegClsPredictor', 'save_joint_segcls_figure']

from .detection import DetectionPredictor, draw_detections  # noqa: E402

__all__ += ['DetectionPredictor', 'draw_detections']

from .exported import (  # noqa: E402
    EXPORT_EXTENSIONS,
    OnnxNetwork,
    detection_network,
    is_exported_network,
    load_exported_network,
    select_network,
)

__all__ += ['EXPORT_EXTENSIONS', 'OnnxNetwork', 'detection_network', 'is_exported_network', 'load_exported_network', 'select_network']
