"""Metrics: segmentation (Dice, HD95, NSD in mm), classification (AUC, F1, ... with bootstrap CIs), localisation
(mask Dice / IoU); functions, Cumulative classes and the ignite handlers beside them. Imports nothing else of
:mod:`pipelines`."""

from __future__ import annotations

from .classification import (
    ClassificationMetrics,
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    f1_score,
    per_class_rates,
    precision,
    predict_labels,
    roc_auc,
    roc_auc_per_class,
    sensitivity,
    specificity,
)
from .segmentation import (
    SEGMENTATION_METRICS,
    PerChannelDice,
    SurfaceDistances,
    SurfaceMetrics,
    compute_segmentation_metrics,
    compute_surface_distances,
    dice,
    dice_per_channel,
    hd95,
    image_diagonal_mm,
    nsd,
    spacing_from_meta,
)

__all__ = [
    "ClassificationMetrics",
    "accuracy",
    "balanced_accuracy",
    "bootstrap_ci",
    "classification_report",
    "confusion_matrix",
    "expected_calibration_error",
    "f1_score",
    "per_class_rates",
    "precision",
    "predict_labels",
    "roc_auc",
    "roc_auc_per_class",
    "sensitivity",
    "specificity",
    "SEGMENTATION_METRICS",
    "PerChannelDice",
    "SurfaceDistances",
    "SurfaceMetrics",
    "compute_segmentation_metrics",
    "compute_surface_distances",
    "dice",
    "dice_per_channel",
    "hd95",
    "image_diagonal_mm",
    "nsd",
    "spacing_from_meta",
]

from . import attention, handlers, localisation
from .attention import (
    CAM_LOCALISATION_METRICS,
    CAMLocalisationHandler,
    CAMLocalisationMetrics,
    attention_in_region_ratio,
    pointing_game_hits,
)
from .handlers import (
    ClassificationMetricsHandler,
    PerChannelMeanDice,
    SegmentationMetricsHandler,
    foreground_output_transform,
)
from .localisation import (
    LOCALISATION_METRICS,
    MaskLocalisationHandler,
    MaskLocalisationMetrics,
    mask_dice_iou,
    upsample_mask,
)

# the former name of MaskLocalisationHandler, kept while tests/pipelines/handlers still import it

__all__ += [
    "ClassificationMetricsHandler", "LOCALISATION_METRICS", "MaskLocalisationHandler",
    "MaskLocalisationMetrics", "PerChannelMeanDice", "SegmentationMetricsHandler", "foreground_output_transform",
    "handlers", "localisation", "mask_dice_iou", "upsample_mask",
]
__all__ += [
    "CAM_LOCALISATION_METRICS", "CAMLocalisationHandler", "CAMLocalisationMetrics", "attention",
    "attention_in_region_ratio", "pointing_game_hits",
]
from . import detection  # noqa: E402
from .detection import (  # noqa: E402
    DETECTION_METRICS,
    DetectionEvaluation,
    DetectionMetric,
    DetectionMetricsHandler,
    ExactCOCOMetric,
    box_iou_exact,
    detection_metrics,
    detection_report,
)

__all__ += [
    "DETECTION_METRICS", "DetectionEvaluation", "DetectionMetric", "DetectionMetricsHandler", "ExactCOCOMetric",
    "box_iou_exact", "detection", "detection_metrics", "detection_report",
]
