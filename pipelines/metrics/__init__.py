"""Metrics for papers: segmentation (Dice, HD95, NSD in mm) and classification (AUC, F1, ... with bootstrap CIs)."""

from __future__ import annotations

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
