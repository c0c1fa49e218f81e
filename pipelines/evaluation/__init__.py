"""Evaluation: reports with bootstrap CIs (CSV / JSON / Markdown), robustness (PGD), saliency (Grad-CAM),
per-method evaluations."""

from __future__ import annotations

from . import reports, robustness, saliency
from .handlers import MetricsReportHandler
from .lanet import evaluate_lanet, save_lanet_figure
from .reports import write_classification_report, write_segmentation_report
from .robustness import pgd_attack, to_minus_one_one
from .saliency import grad_cam

__all__ = ['MetricsReportHandler', 'evaluate_lanet', 'grad_cam', 'pgd_attack', 'reports', 'robustness', 'saliency', 'save_lanet_figure', 'to_minus_one_one', 'write_classification_report', 'write_segmentation_report']
