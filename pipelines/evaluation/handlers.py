"""The report writer of an evaluation: per-case metrics of a metric handler -> CSV / JSON / Markdown."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events

from ..metrics.handlers import ClassificationMetricsHandler, SegmentationMetricsHandler
from .reports import (
    classification_markdown_table,
    markdown_table,
    write_classification_report,
    write_segmentation_report,
)

logger = logging.getLogger(__name__)

__all__ = ['MetricsReportHandler']


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
        if writer is not None:
            writer.flush()
        n_cases = len(details["y_true"]) if isinstance(details, dict) else len(details)
        message = f"metrics report ({n_cases} cases) in {self.save_dir}:\n{self.table}"
        logger.info(message)
        print(message)
