"""Metrics for papers: segmentation (Dice, HD95, NSD in mm) and classification (AUC, F1, ... with bootstrap CIs)."""

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
    SurfaceDistances,
    SurfaceMetrics,
    compute_segmentation_metrics,
    compute_surface_distances,
    dice,
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
    "SurfaceDistances",
    "SurfaceMetrics",
    "compute_segmentation_metrics",
    "compute_surface_distances",
    "dice",
    "hd95",
    "image_diagonal_mm",
    "nsd",
    "spacing_from_meta",
]

from . import handlers  # noqa: E402  (needs the metric modules above; imports pipelines.reports)
from .handlers import ClassificationMetricsHandler, MetricsReportHandler, SegmentationMetricsHandler  # noqa: E402

__all__ += ["ClassificationMetricsHandler", "MetricsReportHandler", "SegmentationMetricsHandler", "handlers"]
