"""The report writers of an evaluation: per-case metrics of a metric handler -> CSV / JSON / Markdown.

* :class:`MetricsReportHandler`: the classification or segmentation report (with bootstrap CIs), plus the sections
  of other report handlers in ``summary.json`` / ``summary.md``.
* :class:`LocalisationReportHandler`: the per-image mask Dice / IoU of a
  :class:`~pipelines.metrics.MaskLocalisationHandler` -> ``localisation.csv`` and a ``localisation`` section.

A *section* handler (e.g. this module's :class:`LocalisationReportHandler`,
:class:`~pipelines.evaluation.robustness.PGDRobustnessHandler`) has a ``section_name``, the ``section`` dict of the
last run (None before) and ``markdown()``; :class:`MetricsReportHandler` adds them to its summary when it is attached
after them.
"""

from __future__ import annotations

import abc
import csv
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events

from ..metrics.handlers import ClassificationMetricsHandler, SegmentationMetricsHandler
from .reports import (
    classification_markdown_table,
    json_safe,
    markdown_table,
    write_classification_report,
    write_segmentation_report,
)

logger = logging.getLogger(__name__)

__all__ = ['LocalisationReportHandler', 'MetricsReportHandler', 'RowsReportHandler']


class MetricsReportHandler:
    """Writes the report of a metric handler's per-case results when the evaluator completes.

    Segmentation: :func:`~pipelines.evaluation.reports.write_segmentation_report` (``metrics.csv``, ``summary.json``,
    ``summary.md``). Classification: :func:`~pipelines.evaluation.reports.write_classification_report` (``predictions.csv``,
    ``summary.json``, ``summary.md``). The Markdown table is printed, logged, and written to TensorBoard as text when
    ``log_dir`` or ``summary_writer`` is given. Only rank 0 writes under DDP (the metric handlers gather all ranks).
    Attach it after the metric handler (MONAI's evaluators attach metrics first, then ``val_handlers``).

    Args:
        save_dir: report folder.
        metric_name: name of the metric handler in ``engine.state.metric_details`` (e.g. the ``key_metric`` name).
        handler: the metric handler object itself, instead of ``metric_name``.
        class_names / metrics: segmentation table layout; default from the handler.
        log_dir: TensorBoard folder (a writer is created on rank 0), or ``summary_writer``.
        summary_writer: an existing ``SummaryWriter``.
        n_resamples: bootstrap resamples for the CIs.
        seed: bootstrap seed.
        tag: TensorBoard text tag.
        step_transform: ``engine -> step`` for TensorBoard; default ``engine.state.epoch``.
        sections: section handlers (``section_name``, ``section``, ``markdown()``) attached before this one:
            ``summary.json[section_name] = section`` and their Markdown after the table in ``summary.md``.
    """

    def __init__(
        self,
        save_dir: str,
        metric_name: str | None = None,
        handler: SegmentationMetricsHandler | ClassificationMetricsHandler | None = None,
        class_names: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        log_dir: str | None = None,
        summary_writer: Any = None,
        n_resamples: int = 1000,
        seed: int = 0,
        tag: str = "metrics_report",
        step_transform: Callable[[Engine], int] = lambda engine: engine.state.epoch,
        sections: Sequence[Any] = (),
    ) -> None:
        if (metric_name is None) == (handler is None):
            raise ValueError("give exactly one of metric_name and handler.")
        self.save_dir = save_dir
        self.metric_name = metric_name
        self.handler = handler
        self.class_names = tuple(class_names) if class_names is not None else None
        self.metrics = tuple(metrics) if metrics is not None else None
        self.log_dir = log_dir
        self._writer = summary_writer
        self.n_resamples = n_resamples
        self.seed = seed
        self.tag = tag
        self.step_transform = step_transform
        self.sections = tuple(s for s in sections if s is not None)  # disabled config components are None
        self.summary: dict[str, Any] | None = None
        self.table: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def _details(self, engine: Engine) -> Any:
        if self.handler is not None:
            if isinstance(self.handler, SegmentationMetricsHandler):
                return self.handler.rows
            return engine.state.metric_details[self.handler._name]
        details = getattr(engine.state, "metric_details", {})
        if self.metric_name not in details:
            raise KeyError(f"no metric details named {self.metric_name!r}; have {sorted(details)}.")
        return details[self.metric_name]

    def _layout(self, rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        class_names = self.class_names or getattr(self.handler, "class_names", None)
        metrics = self.metrics or getattr(self.handler, "metrics", None)
        columns = [c for c in rows[0] if c != "case_id"] if rows else []
        if metrics is None:
            metrics = tuple(dict.fromkeys(c.split("_", 1)[0] for c in columns))
        if class_names is None:
            class_names = tuple(dict.fromkeys(c.split("_", 1)[1] for c in columns))
        return tuple(class_names), tuple(metrics)

    def __call__(self, engine: Engine) -> None:
        details = self._details(engine)  # every rank: the handler already gathered
        if idist.get_rank() != 0:
            return
        writer = self._writer
        if writer is None and self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            writer = self._writer = SummaryWriter(log_dir=self.log_dir)
        step = int(self.step_transform(engine))
        if isinstance(details, dict) and "y_prob" in details:
            class_names = self.class_names or getattr(self.handler, "class_names", None)
            if class_names is None:
                class_names = [str(k) for k in range(details["y_prob"].shape[1])]
            self.summary = write_classification_report(
                details["y_true"], details["y_prob"], self.save_dir, class_names, case_ids=details.get("case_ids"),
                tb_writer=writer, step=step, n_resamples=self.n_resamples, seed=self.seed, tag=self.tag,
            )
            self.table = classification_markdown_table(self.summary)
        else:
            rows = list(details)
            class_names, metrics = self._layout(rows)
            self.summary = write_segmentation_report(
                rows, self.save_dir, class_names, metrics, tb_writer=writer, step=step,
                n_resamples=self.n_resamples, seed=self.seed, tag=self.tag,
            )
            self.table = markdown_table(self.summary, class_names, metrics)
        if self.sections:
            self._add_sections(writer, step)
        if writer is not None:
            writer.flush()
        n_cases = len(details["y_true"]) if isinstance(details, dict) else len(details)
        message = f"metrics report ({n_cases} cases) in {self.save_dir}:\n{self.table}"
        logger.info(message)
        print(message)

    def _add_sections(self, writer: Any, step: int) -> None:
        """Add the sections to ``summary.json`` and ``summary.md`` (and the TensorBoard text)."""
        parts = [self.table or ""]
        for section in self.sections:
            if section.section is None:
                raise RuntimeError(
                    f"{type(section).__name__} has no result for this run: attach it before MetricsReportHandler."
                )
            self.summary[section.section_name] = section.section
            parts.append(section.markdown())
        with open(os.path.join(self.save_dir, "summary.json"), "w") as f:
            json.dump(json_safe(self.summary), f, indent=2)
        self.table = "\n\n".join(p.strip() for p in parts) + "\n"
        with open(os.path.join(self.save_dir, "summary.md"), "w") as f:
            f.write(self.table)
        if writer is not None:
            writer.add_text(self.tag, self.table, step)


class RowsReportHandler(abc.ABC):
    """Base of a *section* handler that writes the per-image rows of a metric handler (``engine.state.metric_details``)
    when the evaluator completes: ``<save_dir>/<filename>`` (:meth:`write_rows`) and the ``section`` dict
    (:meth:`make_section`) that :class:`MetricsReportHandler` adds to its summary. Only rank 0 writes under DDP (the
    metric handler gathers all ranks). Subclasses implement :meth:`make_section`, :meth:`write_rows` and ``markdown()``.

    Args:
        save_dir: report folder.
        metric_name: name of the metric handler in ``engine.state.metric_details``.
        filename: CSV name.
        section_name: key in ``summary.json``.
    """

    def __init__(self, save_dir: str, metric_name: str, filename: str, section_name: str) -> None:
        self.save_dir = save_dir
        self.metric_name = metric_name
        self.filename = filename
        self.section_name = section_name
        self.section: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.section = None

    @staticmethod
    def means(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, float]:
        """Mean of each of ``keys`` over ``rows`` (NaN when there is no row)."""
        return {k: float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in keys}

    @abc.abstractmethod
    def make_section(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``section`` of this run's ``rows``."""

    @abc.abstractmethod
    def write_rows(self, f: Any, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` as CSV to the open text file ``f``."""

    @abc.abstractmethod
    def markdown(self) -> str:
        """The section as Markdown for ``summary.md``."""

    def __call__(self, engine: Engine) -> None:
        details = getattr(engine.state, "metric_details", {})
        if self.metric_name not in details:
            raise KeyError(f"no metric details named {self.metric_name!r}; have {sorted(details)}.")
        rows = list(details[self.metric_name])
        self.section = self.make_section(rows)
        if idist.get_rank() != 0:
            return
        os.makedirs(self.save_dir, exist_ok=True)
        with open(os.path.join(self.save_dir, self.filename), "w", newline="") as f:
            self.write_rows(f, rows)


class LocalisationReportHandler(RowsReportHandler):
    """Writes the per-image localisation of a :class:`~pipelines.metrics.MaskLocalisationHandler` when the
    evaluator completes: ``<save_dir>/localisation.csv`` (``case_id, iou, dice`` of each image with a mask) and the
    ``section`` ``{"n", "threshold", "iou", "dice"}`` (means) for :class:`MetricsReportHandler`.

    Only rank 0 writes under DDP (the metric handler gathers all ranks).

    Args:
        save_dir: report folder.
        metric_name: name of the localisation metric in ``engine.state.metric_details`` (e.g. ``val_mask_dice``).
        threshold: the metric's threshold, recorded in the section.
        filename: CSV name.
        section_name: key in ``summary.json``.
    """

    def __init__(
        self,
        save_dir: str,
        metric_name: str,
        threshold: float = 0.5,
        filename: str = "localisation.csv",
        section_name: str = "localisation",
    ) -> None:
        super().__init__(save_dir, metric_name, filename, section_name)
        self.threshold = float(threshold)

    def make_section(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"n": len(rows), "threshold": self.threshold, **self.means(rows, ("iou", "dice"))}

    def write_rows(self, f: Any, rows: list[dict[str, Any]]) -> None:
        writer = csv.DictWriter(f, fieldnames=["case_id", "iou", "dice"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("case_id", "iou", "dice")} for r in rows)

    def markdown(self) -> str:
        """The localisation table of the last run."""
        if self.section is None:
            return ""
        lines = ["## Localisation", "", "| Metric | Value | n |", "|---|---|---|"]
        for key in ("iou", "dice"):
            lines.append(f"| {key} | {self.section[key]:.3f} | {self.section['n']} |")
        return "\n".join(lines) + "\n"
