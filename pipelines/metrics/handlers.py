"""Ignite handlers for the paper metrics: per-case segmentation / classification metrics and per-channel Dice.

* :class:`SegmentationMetricsHandler`: Dice, HD95, NSD in mm per case and class (:class:`SurfaceMetrics`).
* :class:`ClassificationMetricsHandler`: AUC (key metric), accuracy, F1, ... (:class:`ClassificationMetrics`).
* :class:`PerChannelMeanDice`: per-channel Dice (:class:`PerChannelDice`, the empty-mask convention of
  :class:`SegmentationMetricsHandler`), mean over channels as the key metric plus one value per channel: the
  validation of a training run scores what the evaluation reports.

The report writer that reads these handlers' per-case results is :class:`pipelines.evaluation.MetricsReportHandler`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler

from .classification import ClassificationMetrics
from .segmentation import SEGMENTATION_METRICS, PerChannelDice, SurfaceMetrics

__all__ = [
    "ClassificationMetricsHandler", "PerCaseMetricHandler", "PerChannelMeanDice", "SegmentationMetricsHandler",
    "foreground_output_transform", "gather_strings",
]

logger = logging.getLogger(__name__)


def gather_strings(values: list[str]) -> list[str]:
    """Concatenate per-rank string lists in rank order (the order of MONAI's buffer gathering)."""
    if idist.get_world_size() <= 1:
        return values
    gathered = idist.all_gather("\x1f".join(values))
    return [v for chunk in gathered for v in (chunk.split("\x1f") if chunk else [])]


def _default_case_ids(y_pred: Any, n: int, start: int) -> list[str]:
    """``filename_or_obj`` of each item's meta when available, else a running index ``case_0000``."""
    items = y_pred if isinstance(y_pred, (list, tuple)) else [y_pred[i] for i in range(n)]
    ids = []
    for i, item in enumerate(items):
        meta = getattr(item, "meta", None)
        name = meta.get("filename_or_obj") if isinstance(meta, dict) else None
        if isinstance(name, (list, tuple)):  # batched meta
            name = name[i] if i < len(name) else None
        ids.append(os.path.basename(str(name)) if name else f"case_{start + i:04d}")
    return ids


class PerCaseMetricHandler(IgniteMetricHandler):
    """Shared plumbing: per-item extras from ``engine.state`` and the per-case ids."""

    def __init__(
        self,
        metric_fn: Any,
        output_transform: Callable,
        case_id_transform: Callable | None,
        save_details: bool,
    ) -> None:
        self.case_id_transform = case_id_transform
        self._case_ids: list[str] = []
        self._pending: dict[str, Any] = {}
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def reset(self) -> None:
        super().reset()
        self._case_ids = []

    def _extra_inputs(self, output: Any) -> dict[str, Any]:
        return {}

    def iteration_completed(self, engine: Engine) -> None:
        """Read the per-item spacing (``engine.state.output``) and ids (``engine.state.batch``) before ``update``."""
        self._pending = self._extra_inputs(engine.state.output)
        if self.case_id_transform is not None:
            self._pending["case_ids"] = [str(c) for c in self.case_id_transform(engine.state.batch)]
        super().iteration_completed(engine)

    def _take(self, key: str, n: int) -> Any:
        """The next ``n`` pending per-item values of this iteration (ignite may call ``update`` once per item)."""
        values = self._pending.get(key)
        if values is None:
            return None
        start = self._pending.setdefault(f"{key}_used", 0)
        if start + n > len(values):
            raise ValueError(f"{key}: {len(values)} values for this iteration, but {start + n} items reached update().")
        self._pending[f"{key}_used"] = start + n
        return values[start : start + n]

    def _record_case_ids(self, y_pred: Any, n: int) -> None:
        ids = self._take("case_ids", n)
        self._case_ids.extend(ids if ids is not None else _default_case_ids(y_pred, n, len(self._case_ids)))

    def case_ids(self) -> list[str]:
        """Ids of all cases seen this run (all ranks under DDP), in buffer order."""
        return gather_strings(list(self._case_ids))

    def _publish(self, values: dict[str, float]) -> None:
        if self._engine is not None:
            self._engine.state.metrics.update(values)


class SegmentationMetricsHandler(PerCaseMetricHandler):
    """Per-case Dice, HD95 and NSD in mm for each class; mean Dice over classes as the (key) metric.

    After each run: ``engine.state.metrics[name]`` = mean over classes of the ``key`` metric's per-class mean
    (Dice by default), ``engine.state.metrics[f"{metric}_{class}"]`` = each mean over cases, and
    ``engine.state.metric_details[name]`` = the per-case table, a list of ``{"case_id", f"{metric}_{class}": ...}``
    dicts (not a tensor: do not list this name in MONAI's ``MetricsSaver(metric_details=...)``; use
    :class:`MetricsReportHandler`).

    Spacing per item, first found: ``spacing_transform(engine.state.output)``, the fixed ``spacing``, the affine
    (then ``meta["pixdim"]``) of the prediction MetaTensors, that of the labels; otherwise an error.

    Args:
        class_names: one per channel, e.g. ``("TC", "WT", "ET")``.
        metrics: subset of ``("dice", "hd95", "nsd")``.
        tolerance_mm: NSD tolerance in mm.
        output_transform: ``engine.state.output`` -> ``(y_pred, y)``, binarised ``(B, C, *spatial)`` batches or lists
            of ``(C, *spatial)`` items, e.g. ``from_engine(["pred", "label"])``.
        spacing_transform: ``engine.state.output`` -> one spacing (mm per spatial axis) per item, e.g.
            ``lambda out: [o["image"].pixdim for o in out]``.
        spacing: fixed spacing for every item (mm per spatial axis).
        case_id_transform: ``engine.state.batch`` -> one id per item (like ``MetricsSaver``'s ``batch_transform``;
            MONAI evaluators keep extra data keys in the decollated batch, not in the output), e.g.
            ``lambda batch: [item["case_id"] for item in batch]``; default: the prediction's
            ``meta["filename_or_obj"]`` base name, else ``case_0000``, ...
        key: metric averaged over classes for ``engine.state.metrics[name]``.
        save_details: put the per-case table into ``engine.state.metric_details[name]``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        metrics: Sequence[str] = SEGMENTATION_METRICS,
        tolerance_mm: float = 1.0,
        output_transform: Callable = lambda x: x,
        spacing_transform: Callable | None = None,
        spacing: Sequence[float] | None = None,
        case_id_transform: Callable | None = None,
        key: str = "dice",
        save_details: bool = True,
    ) -> None:
        metric_fn = SurfaceMetrics(class_names=class_names, metrics=metrics, tolerance_mm=tolerance_mm, spacing=spacing)
        if key not in metric_fn.metrics:
            raise ValueError(f"key {key!r} must be one of metrics {metric_fn.metrics}.")
        self.class_names = tuple(class_names)
        self.metrics = metric_fn.metrics
        self.key = key
        self.spacing_transform = spacing_transform
        self.rows: list[dict[str, Any]] = []
        super().__init__(metric_fn, output_transform, case_id_transform, save_details)

    def _extra_inputs(self, output: Any) -> dict[str, Any]:
        if self.spacing_transform is None:
            return {}
        spacing = [
            np.asarray(s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else s, dtype=np.float64).ravel()
            for s in self.spacing_transform(output)
        ]
        return {"spacing": np.stack(spacing)}

    def update(self, output: Sequence[Any]) -> None:
        if len(output) != 2:
            raise ValueError(f"output_transform must give (y_pred, y), got {len(output)} items.")
        y_pred, y = output
        n = len(y_pred)
        spacing = self._take("spacing", n)
        if isinstance(y_pred, (list, tuple)):  # per-item tensors: one call each so each keeps its own meta
            for i, (p, t) in enumerate(zip(y_pred, y)):
                self.metric_fn(p.unsqueeze(0), torch.as_tensor(t).unsqueeze(0),
                               spacing=None if spacing is None else spacing[i : i + 1])
        else:
            self.metric_fn(y_pred, y, spacing=spacing)
        self._record_case_ids(y_pred, n)

    def compute(self) -> float:
        means = self.metric_fn.aggregate()
        self.rows = self.metric_fn.per_case(self.case_ids())
        self._publish(means)
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("call attach() before compute().")
            self._engine.state.metric_details[self._name] = self.rows
        self._is_reduced = True
        return float(np.mean([means[f"{self.key}_{c}"] for c in self.class_names]))


class ClassificationMetricsHandler(PerCaseMetricHandler):
    """AUC (or another key) as the metric, every other classification metric into ``engine.state.metrics``.

    ``engine.state.metrics`` gets the keys of :func:`~pipelines.metrics.classification_report` (``auc``,
    ``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``sensitivity_<class>``, ...), ``engine.state.metrics[name]``
    the ``key`` metric, and ``engine.state.metric_details[name]`` ``{"case_ids", "y_true", "y_prob"}`` (numpy),
    which :class:`MetricsReportHandler` turns into a report with bootstrap CIs.

    Args:
        class_names: one per class.
        output_transform: ``engine.state.output`` -> ``(probabilities (B, K), labels (B,) or one-hot (B, K))``;
            apply softmax/sigmoid first (e.g. in the evaluator's postprocessing).
        case_id_transform: ``engine.state.batch`` -> one id per item.
        key: the reported key metric.
        n_resamples: bootstrap resamples for CIs in ``engine.state.metrics`` (0: none, as usual per epoch).
        seed: bootstrap seed.
        threshold: decision threshold of binary problems.
        save_details: keep probabilities and labels in ``engine.state.metric_details[name]``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_transform: Callable = lambda x: x,
        case_id_transform: Callable | None = None,
        key: str = "auc",
        n_resamples: int = 0,
        seed: int = 0,
        threshold: float = 0.5,
        save_details: bool = True,
    ) -> None:
        metric_fn = ClassificationMetrics(
            class_names=class_names, n_resamples=n_resamples, seed=seed, threshold=threshold
        )
        self.class_names = tuple(class_names)
        self.key = key
        super().__init__(metric_fn, output_transform, case_id_transform, save_details)

    def update(self, output: Sequence[Any]) -> None:
        if len(output) != 2:
            raise ValueError(f"output_transform must give (y_pred, y), got {len(output)} items.")
        y_pred, y = output
        self.metric_fn(y_pred, y)
        self._record_case_ids(y_pred, len(y_pred))

    def compute(self) -> float:
        report = self.metric_fn.report()
        values = {}
        for k, entry in report["metrics"].items():
            values[k] = entry["value"]
            if report["n_resamples"]:
                values[f"{k}_ci_low"], values[f"{k}_ci_high"] = entry["ci_low"], entry["ci_high"]
        if self.key not in values:
            raise KeyError(f"key {self.key!r} is not one of {sorted(values)}.")
        self._publish(values)
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("call attach() before compute().")
            y_true, y_prob = self.metric_fn.arrays()
            self._engine.state.metric_details[self._name] = {
                "case_ids": self.case_ids(), "y_true": y_true, "y_prob": y_prob,
            }
        self._is_reduced = True
        return float(values[self.key])


class PerChannelMeanDice(IgniteMetricHandler):
    """Mean Dice over channels (the key metric) that also reports each channel under its own name.

    ``engine.state.metrics[name]`` holds the mean over ``channel_names`` of each channel's mean over cases;
    ``engine.state.metrics[f"{name}_{c}"]`` holds each channel's mean over cases, so TensorBoard and the console show
    e.g. ``val_mean_dice_TC``. The Dice is :class:`~pipelines.metrics.PerChannelDice`: a channel empty in both
    prediction and label scores 1, empty in exactly one 0 (no case drops out), the convention of
    :class:`SegmentationMetricsHandler`, so on the same predictions both report the same mean Dice.

    Args:
        channel_names: one name per reported channel, e.g. ``("TC", "WT", "ET")``.
        include_background: keep channel 0 (``False`` for one-hot outputs whose channel 0 is background).
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, binarised.
        save_details: keep the per-case scores ``(cases, channels)`` in ``engine.state.metric_details[name]``.
    """

    def __init__(
        self,
        channel_names: Sequence[str],
        include_background: bool = True,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        self.channel_names = tuple(channel_names)
        metric_fn = PerChannelDice(include_background=include_background)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)

    def compute(self) -> float:
        per_channel = self.metric_fn.aggregate()
        if per_channel.numel() != len(self.channel_names):
            raise ValueError(
                f"Dice has {per_channel.numel()} channels but {len(self.channel_names)} channel names were given: "
                f"{self.channel_names}."
            )
        values = per_channel.tolist()
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("call attach() before compute().")
            self._engine.state.metric_details[self._name] = self.metric_fn.get_buffer()
        if self._engine is not None and self._name is not None:
            for name, value in zip(self.channel_names, values):
                self._engine.state.metrics[f"{self._name}_{name}"] = value
        self._is_reduced = True
        # the reduction of SegmentationMetricsHandler: numpy mean of the per-channel means
        return float(np.mean(values))


def foreground_output_transform(pred_key: str = "pred", label_key: str = "label") -> Callable:
    """``output_transform`` that drops channel 0 (background) of one-hot predictions and labels.

    For softmax bundles whose metrics are reported over the foreground classes only. Works on MONAI's decollated
    evaluator output (a list of per-item dicts); slicing keeps each MetaTensor's affine (needed for the spacing).
    """

    def _transform(output) -> tuple[list, list]:
        items = output if isinstance(output, (list, tuple)) else [output]
        return [item[pred_key][1:] for item in items], [item[label_key][1:] for item in items]

    return _transform

