"""The detection report (``bundles/busi_detection``'s evaluation): per-detection and per-image CSVs, every metric of
:mod:`pipelines.metrics.detection` with its bootstrap CI, and the FROC curve.

:func:`write_detection_report` writes into ``out_dir``:

* ``detections.csv``: one row per detection, in decreasing score per image: ``case_id, score, x1, y1, x2, y2``
  (x = column, y = row, the coordinates of the evaluation output), ``iou`` (with its best-overlapping truth box),
  ``froc_hit`` (a FROC true positive at IoU >= ``froc_iou``), ``selected`` (the image's selection-score detection);
* ``per_image.csv``: ``case_id, n_truth, n_pred, best_iou, selected_score, selected_iou, outcome`` (TP / FP / FN / TN
  of the selection score);
* ``summary.json``: :meth:`~pipelines.metrics.DetectionEvaluation.report` (``metrics: {name: {value, ci_low,
  ci_high}}``, counts, outcomes, settings, the FROC curve);
* ``summary.md``: a Markdown table of the metrics with their CIs;
* ``froc.png``: sensitivity against false positives per image (log2 axis; the operating points joined linearly, as
  the FROC score interpolates), the sensitivities at the FROC rates marked.

:class:`DetectionReportHandler` writes it when an evaluator completes, from the per-image boxes that a
:class:`~pipelines.metrics.DetectionMetricsHandler` keeps in ``engine.state.metric_details``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events

from ..metrics.detection import DetectionEvaluation, DetectionMetricsHandler
from .reports import json_safe

__all__ = ["DetectionReportHandler", "detection_markdown_table", "save_froc_curve", "write_detection_report"]

logger = logging.getLogger(__name__)

_LABELS = {"map": "mAP@[.5:.95]", "ap50": "AP50", "ap75": "AP75", "mar": "AR@100", "froc": "FROC (mean)",
           "selection_score": "selection score"}


def _label(key: str) -> str:
    if key in _LABELS:
        return _LABELS[key]
    if key.startswith("mar_"):
        return f"AR@{key[4:]}"
    if key.startswith("froc_"):
        return f"sensitivity @ {key[5:]} FP/image"
    return key


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def detection_markdown_table(report: dict[str, Any], digits: int = 3) -> str:
    """Markdown table of a detection report: one row per metric, value and ``[low, high]`` bootstrap CI, then the
    image counts and the selection-score outcomes."""
    pct = round(100 * (1 - report["alpha"]))
    lines = [f"| Metric | Value | {pct}% CI |", "|---|---|---|"]
    for key, entry in report["metrics"].items():
        ci = f"[{_fmt(entry['ci_low'], digits)}, {_fmt(entry['ci_high'], digits)}]"
        lines.append(f"| {_label(key)} | {_fmt(entry['value'], digits)} | {ci} |")
    outcomes = ", ".join(f"{k} {v}" for k, v in report["outcomes"].items())
    settings = report["settings"]
    lines += [
        "",
        f"{report['n_images']} images ({report['n_images_with_truth']} with a lesion, {report['n_truth']} truth "
        f"boxes), {report['n_detections']} detections; selection score at score > {settings['score_threshold']:g}: "
        f"{outcomes}; FROC hit at IoU >= {settings['froc_iou']:g}; {report['n_resamples']} bootstrap resamples of "
        "the images.",
    ]
    return "\n".join(lines)


def save_froc_curve(report: dict[str, Any], path: str | os.PathLike, dpi: int = 100) -> None:
    """Plot the FROC curve of a detection report (sensitivity against false positives per image, log2 axis) with
    the sensitivities at the report's FP rates marked, as a PNG (matplotlib, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    rates = report["settings"]["fp_rates"]
    fps = np.asarray(report["froc_curve"]["fps_per_image"], dtype=np.float64)
    sens = np.asarray(report["froc_curve"]["sensitivity"], dtype=np.float64)
    if fps.size:  # MONAI's curve runs from the lowest threshold: reversed, both FP rate and sensitivity increase
        ax.plot(np.maximum(fps[::-1], min(rates) / 2), sens[::-1], "-", color="tab:blue", lw=1.2,
                label="operating points (interpolated)")
        if fps[0] < max(rates) * 2:  # beyond the last operating point the score keeps its sensitivity
            ax.plot([max(fps[0], min(rates) / 2), max(rates) * 2], [sens[0], sens[0]], "--", color="tab:blue", lw=1)
    points = [report["metrics"][f"froc_{r:g}"]["value"] for r in rates]
    ax.plot(rates, points, "o", color="tab:red", label=f"FROC = {_fmt(report['metrics']['froc']['value'], 3)}")
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(rates) / 2, max(rates) * 2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path, format="png", dpi=dpi)


def write_detection_report(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    out_dir: str | os.PathLike,
    case_ids: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
    tb_writer: Any = None,
    step: int = 0,
    tag: str = "detection_metrics",
    froc_png: str | None = "froc.png",
    **settings: Any,
) -> dict[str, Any]:
    """Write ``detections.csv``, ``per_image.csv``, ``summary.json``, ``summary.md`` and ``froc.png`` of a test set.

    Args:
        pred_boxes: per image ``(N_i, 4)`` standard-mode boxes ``[r0, c0, r1, c1]``.
        pred_scores: per image ``(N_i,)`` scores.
        gt_boxes: per image ``(M_i, 4)`` truth boxes.
        out_dir: created if missing.
        case_ids: one per image; default ``case_0000``, ...
        n_resamples, seed, alpha, stratified: the bootstrap (:meth:`~pipelines.metrics.DetectionEvaluation.report`).
        tb_writer: TensorBoard ``SummaryWriter`` for the Markdown table (``add_text``).
        step: TensorBoard step.
        tag: TensorBoard text tag.
        froc_png: file name of the FROC plot (None: no plot).
        settings: the metric settings of :class:`~pipelines.metrics.DetectionEvaluation` (``score_threshold``,
            ``froc_iou``, ``fp_rates``, ``max_detections``).

    Returns:
        The report written to ``summary.json``.
    """
    evaluation = DetectionEvaluation(pred_boxes, pred_scores, gt_boxes, **settings)
    report = evaluation.report(n_resamples=n_resamples, seed=seed, alpha=alpha, stratified=stratified)
    os.makedirs(out_dir, exist_ok=True)
    detection_rows = evaluation.detection_rows(case_ids)
    with open(os.path.join(out_dir, "detections.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "score", "x1", "y1", "x2", "y2", "iou", "froc_hit",
                                               "selected"])
        writer.writeheader()
        writer.writerows(detection_rows)
    with open(os.path.join(out_dir, "per_image.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case_id", "n_truth", "n_pred", "best_iou", "selected_score",
                                               "selected_iou", "outcome"])
        writer.writeheader()
        writer.writerows(evaluation.image_rows(case_ids))
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(json_safe(report), f, indent=2)
    table = detection_markdown_table(report)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("## Detection\n\n" + table + "\n")
    if froc_png:
        save_froc_curve(report, os.path.join(out_dir, froc_png))
    if tb_writer is not None:
        tb_writer.add_text(tag, table, step)
    return report


class DetectionReportHandler:
    """Writes the detection report (:func:`write_detection_report`) of a
    :class:`~pipelines.metrics.DetectionMetricsHandler`'s images when the evaluator completes.

    The metric settings (score cutoff, FROC IoU, FP rates, max detections) are the metric handler's. The Markdown
    table is printed, logged, and written to TensorBoard as text when ``log_dir`` or ``summary_writer`` is given. Only
    rank 0 writes under DDP (the metric handler gathers all ranks). Attach it after the metric handler (MONAI's
    evaluators attach metrics first, then ``val_handlers``).

    Args:
        save_dir: report folder.
        metric_name: name of the detection metric handler in ``engine.state.metric_details``.
        handler: the metric handler itself, instead of ``metric_name``.
        n_resamples: bootstrap resamples for the CIs.
        seed: bootstrap seed.
        alpha: 0.05 for 95% intervals.
        stratified: resample the images with and without a lesion separately.
        log_dir: TensorBoard folder (a writer is created on rank 0), or ``summary_writer``.
        summary_writer: an existing ``SummaryWriter``.
        tag: TensorBoard text tag.
        step_transform: ``engine -> step`` for TensorBoard; default ``engine.state.epoch``.
        froc_png: file name of the FROC plot (None: no plot).
    """

    def __init__(
        self,
        save_dir: str,
        metric_name: str | None = None,
        handler: DetectionMetricsHandler | None = None,
        n_resamples: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        stratified: bool = True,
        log_dir: str | None = None,
        summary_writer: Any = None,
        tag: str = "detection_report",
        step_transform: Callable[[Engine], int] = lambda engine: engine.state.epoch,
        froc_png: str | None = "froc.png",
    ) -> None:
        if (metric_name is None) == (handler is None):
            raise ValueError("give exactly one of metric_name and handler.")
        self.save_dir = save_dir
        self.metric_name = metric_name
        self.handler = handler
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self.alpha = float(alpha)
        self.stratified = bool(stratified)
        self.log_dir = log_dir
        self._writer = summary_writer
        self.tag = tag
        self.step_transform = step_transform
        self.froc_png = froc_png
        self.summary: dict[str, Any] | None = None
        self.table: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.summary, self.table = None, None

    def _details(self, engine: Engine) -> dict[str, Any]:
        name = self.handler._name if self.handler is not None else self.metric_name
        details = getattr(engine.state, "metric_details", {})
        if name not in details:
            raise KeyError(f"no metric details named {name!r}; have {sorted(details)} (attach the detection metric "
                           "handler with save_details=True before this handler).")
        return details[name]

    def __call__(self, engine: Engine) -> None:
        details = self._details(engine)  # every rank: the metric handler already gathered
        if idist.get_rank() != 0:
            return
        writer = self._writer
        if writer is None and self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            writer = self._writer = SummaryWriter(log_dir=self.log_dir)
        settings = {k: v for k, v in details.get("settings", {}).items()}
        self.summary = write_detection_report(
            details["pred_box"], details["pred_score"], details["box"], self.save_dir,
            case_ids=details.get("case_ids"), n_resamples=self.n_resamples, seed=self.seed, alpha=self.alpha,
            stratified=self.stratified, tb_writer=writer, step=int(self.step_transform(engine)), tag=self.tag,
            froc_png=self.froc_png, **settings,
        )
        if writer is not None:
            writer.flush()
        self.table = detection_markdown_table(self.summary)
        message = f"detection report ({self.summary['n_images']} images) in {self.save_dir}:\n{self.table}"
        logger.info(message)
        print(message)

    def markdown(self) -> str:
        """The Markdown table of the last run ("" before)."""
        return self.table or ""
