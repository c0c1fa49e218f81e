"""Localisation metrics of a predicted mask at a coarser grid than the image (LA-Net's ``m x m`` map): upsample
bilinearly to the image, threshold, Dice / IoU per image with a ground-truth mask.

One convention everywhere (the stage-1 checkpoint selection of ``bundles/busi_lanet`` and its evaluation report):
the mask probabilities are upsampled bilinearly (``align_corners=False``) to the ground truth's size, thresholded
(``>= threshold``, 0.5 by default), and only images with ``has_mask = 1`` count; an image whose prediction and
ground truth are both empty scores 1 (Fan et al., Medical Image Analysis 90 (2023) 102960 report IoU and Dice this
way).

* :func:`mask_dice_iou`: the per-image values of a batch.
* :class:`MaskLocalisationMetrics`: a MONAI ``Cumulative`` metric; its buffer is gathered across ranks under DDP.
* :class:`MaskLocalisationHandler`: the ignite handler beside it (key or additional metric of an evaluator).
* :class:`FlaggedRowsMetric` / :class:`FlaggedRowsHandler`: their bases (one flagged row of values per image), shared
  with :mod:`pipelines.metrics.attention`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import CumulativeIterationMetric

from .handlers import PerCaseMetricHandler

__all__ = ["FlaggedRowsHandler", "FlaggedRowsMetric", "LOCALISATION_METRICS", "MaskLocalisationHandler",
           "MaskLocalisationMetrics", "mask_dice_iou", "upsample_mask"]

LOCALISATION_METRICS = ("dice", "iou")


def upsample_mask(mask_prob: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """LA-Net mask probabilities ``(B, 1, m, m)`` -> ``(B, 1, *size)``, bilinear (as the paper evaluates)."""
    return F.interpolate(mask_prob.float(), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)


def mask_dice_iou(mask_prob: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of the upsampled mask thresholded at ``threshold`` against ``gt`` ``(B, 1, H, W)``.

    Images whose prediction and ground truth are both empty score 1.
    """
    pred = upsample_mask(torch.as_tensor(mask_prob), gt.shape[2:]) >= threshold
    truth = torch.as_tensor(gt) > 0.5
    inter = (pred & truth).flatten(1).sum(1).double()
    p, t = pred.flatten(1).sum(1).double(), truth.flatten(1).sum(1).double()
    union = p + t - inter
    empty = (p + t) == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (p + t).clamp_min(1))
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    return dice.cpu().numpy(), iou.cpu().numpy()


class FlaggedRowsMetric(CumulativeIterationMetric):
    """Base of a ``Cumulative`` metric that buffers one float64 row per image: a flag (the image counts, e.g. it has
    a mask) followed by one value per name of :attr:`value_names`.

    :meth:`get_buffer` gathers the rows of all ranks under DDP; :meth:`per_case` and :meth:`aggregate` keep the flagged
    rows. A subclass sets :attr:`value_names` and implements ``_compute_tensor`` returning ``(B, 1 + len(value_names))``.
    """

    #: names of the values after the flag, in column order (the keys of :meth:`per_case` and :meth:`aggregate`).
    value_names: tuple[str, ...] = ()

    def _rows(self) -> torch.Tensor:
        width = 1 + len(self.value_names)
        buffer = self.get_buffer()
        if buffer is None:
            return torch.zeros(0, width, dtype=torch.float64)
        return torch.as_tensor(buffer).reshape(-1, width)

    def per_case(self, case_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """``{"case_id", *value_names}`` of every flagged buffered image, in buffer order.

        Args:
            case_ids: one id per buffered image (flagged or not); default ``"case_0000"``, ...
        """
        rows = self._rows()
        if case_ids is None:
            case_ids = [f"case_{i:04d}" for i in range(rows.shape[0])]
        if len(case_ids) != rows.shape[0]:
            raise ValueError(f"{len(case_ids)} case ids for {rows.shape[0]} buffered images.")
        return [
            {"case_id": str(cid), **{name: float(row[1 + j]) for j, name in enumerate(self.value_names)}}
            for cid, row in zip(case_ids, rows)
            if row[0] > 0
        ]

    def aggregate(self) -> dict[str, float]:  # type: ignore[override]
        """Means of :attr:`value_names` over the flagged images (NaN when there is none) and their count ``n``."""
        rows = self._rows()
        rows = rows[rows[:, 0] > 0]
        if rows.shape[0] == 0:
            return {**{name: float("nan") for name in self.value_names}, "n": 0}
        means = {name: float(rows[:, 1 + j].mean()) for j, name in enumerate(self.value_names)}
        return {**means, "n": int(rows.shape[0])}


class FlaggedRowsHandler(PerCaseMetricHandler):
    """Base of the ignite handler of a :class:`FlaggedRowsMetric`: ``engine.state.metrics[name]`` holds the ``kind``
    mean and ``engine.state.metric_details[name]`` the per-image rows of :meth:`FlaggedRowsMetric.per_case`.

    A subclass implements ``update``.

    Args:
        metric_fn: the metric.
        kind: one of ``metric_fn.value_names``, the reported mean.
        output_transform: ``engine.state.output`` -> what ``update`` reads.
        case_id_transform: ``engine.state.batch`` -> one id per image.
        save_details: keep the per-image rows in ``engine.state.metric_details[name]``.
    """

    def __init__(
        self,
        metric_fn: FlaggedRowsMetric,
        kind: str,
        output_transform: Callable,
        case_id_transform: Callable | None,
        save_details: bool,
    ) -> None:
        if kind not in metric_fn.value_names:
            raise ValueError(f"kind must be one of {metric_fn.value_names}, got {kind!r}.")
        self.kind = kind
        self.rows: list[dict[str, Any]] = []
        super().__init__(metric_fn, output_transform, case_id_transform, save_details)

    def compute(self) -> float:
        means = self.metric_fn.aggregate()
        self.rows = self.metric_fn.per_case(self.case_ids())
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("call attach() before compute().")
            self._engine.state.metric_details[self._name] = self.rows
        self._is_reduced = True
        return float(means[self.kind])


class MaskLocalisationMetrics(FlaggedRowsMetric):
    """Per-image Dice and IoU of a coarse mask (:func:`mask_dice_iou`), accumulated over batches.

    Each call adds one row per image to the buffer, ``(has_mask, dice, iou)`` as float64; :meth:`get_buffer`
    gathers the rows of all ranks under DDP, so :meth:`aggregate` averages over every image with a mask.

    Example::

        metric = MaskLocalisationMetrics(threshold=0.5)
        for batch in loader:
            metric(y_pred=mask_prob, y=gt_mask, has_mask=has_mask)
        metric.aggregate()  # {"dice": ..., "iou": ..., "n": ...}
        metric.per_case(case_ids)  # [{"case_id", "dice", "iou"}, ...] of the images with a mask

    Args:
        threshold: probability threshold of the upsampled mask.
    """

    value_names = LOCALISATION_METRICS

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = float(threshold)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Rows of one batch.

        Args:
            y_pred: mask probabilities ``(B, 1, m, n)``.
            y: ground-truth masks ``(B, 1, H, W)``.
            kwargs: ``has_mask`` ``(B,)`` flags (default: every image has a mask).

        Returns:
            ``(B, 3)`` float64 tensor of ``(has_mask, dice, iou)``.
        """
        if y is None:
            raise ValueError("MaskLocalisationMetrics needs the ground-truth mask y.")
        if y_pred.ndim != 4 or y.ndim != 4 or y_pred.shape[0] != y.shape[0]:
            raise ValueError(f"y_pred and y must be (B, 1, h, w) and (B, 1, H, W), got {tuple(y_pred.shape)}, "
                             f"{tuple(y.shape)}.")
        has_mask = kwargs.get("has_mask")
        flags = torch.ones(y.shape[0]) if has_mask is None else torch.as_tensor(has_mask).detach().reshape(-1)
        if flags.numel() != y.shape[0]:
            raise ValueError(f"{flags.numel()} has_mask flags for a batch of {y.shape[0]}.")
        dice, iou = mask_dice_iou(y_pred, y, self.threshold)
        flags = (flags.cpu() > 0).double()
        return torch.stack([flags, torch.from_numpy(dice), torch.from_numpy(iou)], dim=1)


def _lanet_mask_output(output: Any) -> tuple[Any, Any, Any]:
    """``(mask_prob, mask, has_mask)`` of an LA-Net engine output (:mod:`pipelines.engines.lanet`)."""
    return output["mask_prob"], output["mask"], output["has_mask"]


class MaskLocalisationHandler(FlaggedRowsHandler):
    """Mean mask Dice (or IoU) over the images with a mask, as an ignite metric of an evaluator.

    Wraps :class:`MaskLocalisationMetrics` (gathered across ranks under DDP). After each run
    ``engine.state.metrics[name]`` holds the ``kind`` mean and ``engine.state.metric_details[name]`` the per-image
    rows ``{"case_id", "dice", "iou"}`` of the images with a mask. A batch without a predicted mask
    (``mask_prob`` None: a plain classifier) adds nothing.

    Args:
        kind: ``"dice"`` or ``"iou"``, the reported mean.
        threshold: probability threshold of the upsampled mask.
        output_transform: ``engine.state.output`` -> ``(mask_prob (B, 1, m, n), mask (B, 1, H, W), has_mask (B,))``;
            the default reads those keys of the LA-Net iterations' batch dict (engines built with ``decollate=False``).
        case_id_transform: ``engine.state.batch`` -> one id per image, e.g. ``lambda batch: list(batch["case_id"])``.
        save_details: keep the per-image rows in ``engine.state.metric_details[name]``.
    """

    def __init__(
        self,
        kind: str = "dice",
        threshold: float = 0.5,
        output_transform: Callable = _lanet_mask_output,
        case_id_transform: Callable | None = None,
        save_details: bool = True,
    ) -> None:
        self.threshold = float(threshold)
        super().__init__(MaskLocalisationMetrics(threshold), kind, output_transform, case_id_transform, save_details)

    def update(self, output: Sequence[Any]) -> None:
        if len(output) != 3:
            raise ValueError(f"output_transform must give (mask_prob, mask, has_mask), got {len(output)} items.")
        mask_prob, gt, has_mask = output
        if mask_prob is None:
            return
        self.metric_fn(mask_prob, torch.as_tensor(gt), has_mask=has_mask)
        self._record_case_ids(mask_prob, len(mask_prob))
