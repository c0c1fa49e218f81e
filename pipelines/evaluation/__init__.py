"""Evaluation: reports with bootstrap CIs (CSV / JSON / Markdown) and their evaluator handlers, robustness (PGD),
saliency (Grad-CAM), per-method figures (LA-Net)."""

from __future__ import annotations

from . import reports, robustness, saliency
from .cxr import CAMLocalisationReportHandler, CXRFigureHandler, save_cxr_figure
from .handlers import LocalisationReportHandler, MetricsReportHandler
from .lanet import LANetFigureHandler, save_lanet_figure
from .reports import write_classification_report, write_segmentation_report
from .robustness import (
    PGDRobustnessHandler,
    from_minus_one_one,
    pgd_attack,
    to_minus_one_one,
)
from .saliency import grad_cam

__all__ = ['LANetFigureHandler', 'LocalisationReportHandler', 'MetricsReportHandler', 'PGDRobustnessHandler', 'from_minus_one_one', 'grad_cam', 'pgd_attack', 'reports', 'robustness', 'saliency', 'save_lanet_figure', 'to_minus_one_one', 'write_classification_report', 'write_segmentation_report']
__all__ += ['CAMLocalisationReportHandler', 'CXRFigureHandler', 'save_cxr_figure']
from .joint_segcls import SegmentationSubsetReportHandler  # noqa: E402

__all__ += ['SegmentationSubsetReportHandler']
from .detection import DetectionReportHandler, write_detection_report  # noqa: E402

__all__ += ['DetectionReportHandler', 'write_detection_report']
