"""Evaluation of the joint segmentation + classification network (``bundles/busi_joint_segcls``): the segmentation
section of the report, over the lesion images and over all images.

The evaluation runs on MONAI's ``SupervisedEvaluator`` with the project's handlers (the bundle's
``configs/evaluate.yaml``): :class:`~pipelines.metrics.ClassificationMetricsHandler` and
:class:`~pipelines.evaluation.MetricsReportHandler` (AUC one-vs-rest macro, macro-F1, per-class sensitivity and
specificity, confusion matrix, bootstrap CIs), :class:`~pipelines.metrics.SegmentationMetricsHandler` (per-image Dice,
HD95 and NSD with the empty-mask rules: a normal image has an empty truth, so an empty prediction scores Dice 1,
HD95 0, NSD 1 and any predicted lesion Dice 0, NSD 0, HD95 = the image diagonal) and :class:`SegmentationSubsetReportHandler`
(``segmentation.csv`` and the ``segmentation`` section: means with bootstrap CIs over the lesion images and over all
images).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events

from ..metrics.handlers import ClassificationMetricsHandler, SegmentationMetricsHandler
from .reports import summarize_columns

__all__ = ["SegmentationSubsetReportHandler"]


class SegmentationSubsetReportHandler:
    """Per-image segmentation metrics of a :class:`~pipelines.metrics.SegmentationMetricsHandler`, summarised over
    all images and over the images of ``lesion_classes`` (by their true class, read from a
    :class:`~pipelines.metrics.ClassificationMetricsHandler` of the same evaluator), when the evaluator completes.

    Writes ``<save_dir>/<filename>`` (``case_id``, ``class``, then ``<metric>`` per metric of the mask channel) and
    keeps ``section``: ``{"channel", "metrics", "lesion_classes", "all": {metric: {"mean", "std", "median",
    "ci_low", "ci_high", "n"}}, "lesion": {...}}`` for :class:`~pipelines.evaluation.MetricsReportHandler`
    (attach this handler before it). Only rank 0 writes under DDP (both metric handlers gather every rank).

    Args:
        save_dir: report folder.
        segmentation: the segmentation metric handler (one channel, e.g. ``class_names=("lesion",)``).
        classification: the classification metric handler (``save_details=True``), for the true class of each case.
        class_names: names indexed by class.
        lesion_classes: class indices whose images have a lesion (BUSI: benign 1, malignant 2).
        n_resamples: bootstrap resamples of each mean's CI.
        seed: bootstrap seed.
        filename: per-image CSV name.
        section_name: key in ``summary.json``.
    """

    def __init__(
        self,
        save_dir: str,
        segmentation: SegmentationMetricsHandler,
        classification: ClassificationMetricsHandler,
        class_names: Sequence[str],
        lesion_classes: Sequence[int] = (1, 2),
        n_resamples: int = 1000,
        seed: int = 0,
        filename: str = "segmentation.csv",
        section_name: str = "segmentation",
    ) -> None:
        if len(segmentation.class_names) != 1:
            raise ValueError(f"expected one mask channel, got class_names={segmentation.class_names}.")
        self.save_dir = save_dir
        self.segmentation = segmentation
        self.classification = classification
        self.class_names = tuple(class_names)
        bad = [c for c in lesion_classes if not 0 <= int(c) < len(self.class_names)]
        if bad:
            raise ValueError(f"lesion_classes {list(lesion_classes)} outside the {len(self.class_names)} classes.")
        self.lesion_classes = tuple(int(c) for c in lesion_classes)
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self.filename = filename
        self.section_name = section_name
        self.section: dict[str, Any] | None = None
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.section, self.rows = None, []

    def __call__(self, engine: Engine) -> None:
        channel = self.segmentation.class_names[0]
        metrics = tuple(self.segmentation.metrics)
        details = engine.state.metric_details[self.classification._name]
        labels = {str(c): int(y) for c, y in zip(details["case_ids"], np.asarray(details["y_true"]).reshape(-1))}
        rows = []
        for row in self.segmentation.rows:
            case_id = str(row["case_id"])
            if case_id not in labels:
                raise KeyError(f"case {case_id!r} has segmentation metrics but no class label.")
            label = labels[case_id]
            rows.append({"case_id": case_id, "class": self.class_names[label], "label": label,
                         **{m: float(row[f"{m}_{channel}"]) for m in metrics}})
        lesion = [r for r in rows if r["label"] in self.lesion_classes]
        summary = {
            subset: summarize_columns(subset_rows, metrics, n_resamples=self.n_resamples, seed=self.seed)
            for subset, subset_rows in (("all", rows), ("lesion", lesion))
        }
        self.rows = rows
        self.section = {
            "channel": channel, "metrics": list(metrics),
            "lesion_classes": [self.class_names[c] for c in self.lesion_classes], **summary,
        }
        if idist.get_rank() != 0:
            return
        os.makedirs(self.save_dir, exist_ok=True)
        with open(os.path.join(self.save_dir, self.filename), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["case_id", "class", *metrics], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def markdown(self) -> str:
        """The segmentation table of the last run: mean [95% CI] per metric, lesion images and all images."""
        if self.section is None:
            return ""
        metrics = self.section["metrics"]
        lines = ["## Segmentation", "", "| Images | n | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 2) + "|"]
        for subset, title in (("lesion", "lesion (" + ", ".join(self.section["lesion_classes"]) + ")"), ("all", "all")):
            cells = []
            for m in metrics:
                s = self.section[subset][m]
                cells.append("n/a" if not s["n"] else f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]")
            n = self.section[subset][metrics[0]]["n"]
            lines.append(f"| {title} | {n} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
