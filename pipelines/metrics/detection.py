"""Lesion-detection metrics: COCO mAP / AP50 / AP75 / AR, FROC sensitivities, the seed's selection score, with
bootstrap confidence intervals over images; a ``Cumulative`` metric and the ignite handler beside it.

Boxes are MONAI's standard mode (:mod:`monai.data.box_utils`): ``[row_min, col_min, row_max, col_max]`` in 2D
(``(N, 2 * spatial_dims)`` in general), pixel corners, exclusive maxima, so a box's area is
``(row_max - row_min) * (col_max - col_min)`` (no ``+ 1``). IoU is invariant under the axis-aligned shift and per-axis
scaling of a crop and resize, so every metric is the same on the network grid and on the original frame. Scores are
the detector's probabilities; one class (a lesion).

Conventions:

* **COCO** (``map`` = AP@[.50:.05:.95], ``ap50``, ``ap75``, ``mar_1``, ``mar_10``, ``mar`` = AR@[.50:.95] with at
  most 1, 10, 100 detections per image): MONAI's :func:`~monai.apps.detection.metrics.matching.matching_batch` (greedy
  matching in decreasing score, each truth matched once, per IoU threshold) and
  :class:`~monai.apps.detection.metrics.coco.COCOMetric` (101 recall thresholds, interpolated precision). Configured as
  ``pycocotools``' ``COCOeval(iouType="bbox")`` with area range ``all``, and equal to it to 1e-6 (tested; pycocotools'
  boxes are ``[x, y, w, h]`` with x = column). Three differences of MONAI's defaults are removed here:
  1. MONAI's ``COCOMetric`` defaults to IoU 0.1:0.5 and max detections (1, 5, 100); set to 0.5:0.95 and (1, 10, 100).
  2. MONAI's :func:`~monai.data.box_utils.box_iou` computes in float32 (and adds ``eps`` to the union), so an IoU
     exactly at a threshold can fall below it (integer boxes: 13/20 gives 0.6499999762, 9/10 0.8999999762); matching
     uses :func:`box_iou_exact` (float64, no eps), pycocotools' IoU.
  3. ``COCOMetric`` cumulates true/false positives in float32, so a recall such as 9/10 is ``0.9000000119`` and
     ``searchsorted`` picks another precision at the 0.90 recall threshold than pycocotools' float64 (mAP then differs
     by a few 1e-3 on the tests' random sets); :class:`ExactCOCOMetric` overrides its statistics to cumulate in
     float64 (everything else is MONAI's, including ``_compute_stats_single_threshold``).
  The area ranges small/medium/large (COCO's 32^2 / 96^2 pixel limits) are not reported: lesions are resized with
  the frame, so COCO's pixel limits carry no meaning here. A set without any truth box has no AP/AR: NaN (COCO's -1).
* **FROC** (``froc_<fp>``: sensitivity at ``fp`` = 1/8, 1/4, 1/2, 1, 2, 4, 8 false positives per image; ``froc``
  their mean, the LUNA16 / CAMELYON16 score): MONAI's :func:`~monai.metrics.froc.compute_froc_curve_data` and
  :func:`~monai.metrics.froc.compute_froc_score` (linear interpolation between operating points, the sensitivity at the
  largest FP rate beyond it). Hit rule: a detection is a true positive when MONAI's ``matching_batch`` matches it to a
  truth box at IoU >= 0.1 (``froc_iou``), the IoU with which MONAI's lung-nodule RetinaNet bundle validates
  (``COCOMetric(iou_list=[0.1])``; its published LUNA16 FROC uses the challenge's detection-inside-the-nodule-sphere
  rule, which has no box counterpart); each truth counts once (matched by the first detection, in decreasing score,
  whose best free truth it is), every other detection, duplicates included, is a false positive; at most 100
  detections per image. FP rates are over all images (with and
  without a lesion). MONAI's curve function drops the lowest score as a threshold (CAMELYON16 passes 0 for missed
  targets); missed truths are passed as ``-inf`` and one ``-inf`` sentinel is added, so every detection score is an
  operating point. NaN without any truth box.
* **Selection score** (the seed's checkpoint score, over the whole set): per image the single highest-scoring
  detection with score ``> score_threshold`` (0.45); image with truth and detection: TP, adds the IoU of that
  detection with its best-overlapping truth box (a TP may add 0); detection without truth: FP (adds 0); truth without
  detection: FN (adds 0); neither: TN, excluded. ``score = sum(IoU) / (TP + FP + FN)``; 1 when every image is a TN
  (nothing to find, nothing found: the project's both-empty convention), NaN without images.
* **Bootstrap CIs**: percentile intervals over ``n_resamples`` resamples of the images with replacement, stratified by
  "has a truth box" by default (each resample keeps the number of lesion images), from
  ``numpy.random.default_rng(seed)`` (the resampling of :mod:`pipelines.metrics.classification`); matching is done
  once, each resample recomputes the metrics from the per-image matches (its FROC curve by an O(n log n) twin of
  MONAI's O(n^2) curve function, tested equal).

* :func:`detection_metrics` / :func:`detection_report`: the values / values with CIs of per-image lists.
* :class:`DetectionEvaluation`: the same with the per-image matches kept (rows for the report CSVs, FROC curve).
* :class:`DetectionMetric`: a MONAI ``Cumulative`` (buffers gathered across ranks under DDP).
* :class:`DetectionMetricsHandler`: its ignite handler (``engine.state.metrics`` keys, one of them the key metric).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.metrics.coco import (
    COCOMetric,
    _compute_stats_single_threshold,
)
from monai.apps.detection.metrics.matching import matching_batch
from monai.handlers import IgniteMetricHandler
from monai.metrics import Cumulative
from monai.metrics.froc import compute_froc_curve_data, compute_froc_score

from .classification import _interval, _resample_indices
from .handlers import gather_strings

__all__ = [
    "DETECTION_METRICS",
    "DetectionEvaluation",
    "DetectionMetric",
    "DetectionMetricsHandler",
    "ExactCOCOMetric",
    "FROC_FP_RATES",
    "OUTCOMES",
    "box_iou_exact",
    "detection_metrics",
    "detection_output_transform",
    "detection_report",
    "detection_metric_names",
]

#: false positives per image of the FROC sensitivities (LUNA16's 1/8 ... 8).
FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: the selection-score outcomes of an image.
OUTCOMES: tuple[str, ...] = ("TP", "FP", "FN", "TN")


def detection_metric_names(
    fp_rates: Sequence[float] = FROC_FP_RATES, max_detections: Sequence[int] = (1, 10, 100)
) -> tuple[str, ...]:
    """The metric keys, in report order: ``map, ap50, ap75, mar_<d>..., mar, froc, froc_<fp>..., selection_score``."""
    return (
        "map", "ap50", "ap75", *(f"mar_{d}" for d in max_detections[:-1]), "mar", "froc",
        *(f"froc_{float(fp):g}" for fp in fp_rates), "selection_score",
    )


#: the keys of :func:`detection_metrics` with the default settings.
DETECTION_METRICS: tuple[str, ...] = detection_metric_names()


def _as_array(x: Any, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _as_boxes(boxes: Any, spatial_dims: int | None = None, what: str = "boxes") -> np.ndarray:
    """``(N, 2 * spatial_dims)`` float64 boxes (an empty input -> ``(0, 2 * spatial_dims)``)."""
    arr = _as_array(boxes if boxes is not None else [])
    if arr.size == 0:
        return np.zeros((0, 2 * (spatial_dims or 2)), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] % 2 or (spatial_dims is not None and arr.shape[1] != 2 * spatial_dims):
        expected = "(N, 2 * spatial_dims)" if spatial_dims is None else f"(N, {2 * spatial_dims})"
        raise ValueError(f"{what} must be {expected} standard-mode boxes, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contain NaN or inf.")
    d = arr.shape[1] // 2
    bad = np.flatnonzero(np.any(arr[:, d:] < arr[:, :d], axis=1))
    if bad.size:
        raise ValueError(f"{what}: box {int(bad[0])} {arr[bad[0]].tolist()} has a maximum below its minimum.")
    return arr


def box_iou_exact(boxes1: Any, boxes2: Any) -> np.ndarray:
    """IoU ``(N, M)`` of standard-mode boxes in float64, without MONAI's ``eps`` (pycocotools' IoU).

    Boxes without area have IoU 0 with everything.

    Args:
        boxes1: ``(N, 2 * spatial_dims)``.
        boxes2: ``(M, 2 * spatial_dims)``.
    """
    b1, b2 = _as_boxes(boxes1), _as_boxes(boxes2)
    d = b1.shape[1] // 2
    if b2.shape[1] != 2 * d:
        raise ValueError(f"boxes of different dimensions: {b1.shape} and {b2.shape}.")
    low = np.maximum(b1[:, None, :d], b2[None, :, :d])
    high = np.minimum(b1[:, None, d:], b2[None, :, d:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=-1)
    area1 = np.prod(np.clip(b1[:, d:] - b1[:, :d], 0.0, None), axis=-1)
    area2 = np.prod(np.clip(b2[:, d:] - b2[:, :d], 0.0, None), axis=-1)
    union = area1[:, None] + area2[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class ExactCOCOMetric(COCOMetric):
    """MONAI's :class:`~monai.apps.detection.metrics.coco.COCOMetric` with true/false positives cumulated in float64,
    as pycocotools' ``COCOeval.accumulate`` (the module docstring, difference 3). Same arguments and outputs."""

    def _compute_statistics(self, results_list: list[dict[int, dict[str, np.ndarray]]]) -> dict[str, Any]:
        n_iou, n_recall = len(self.iou_thresholds), len(self.recall_thresholds)
        n_classes, n_max_det = len(self.classes), len(self.max_detections)
        precision = -np.ones((n_iou, n_recall, n_classes, n_max_det))
        recall = -np.ones((n_iou, n_classes, n_max_det))
        scores = -np.ones((n_iou, n_recall, n_classes, n_max_det))
        for cls_idx in range(n_classes):
            per_image = [r[cls_idx] for r in results_list if cls_idx in r]
            if not per_image:
                continue
            num_gt = int(np.count_nonzero(np.concatenate([r["gtIgnore"] for r in per_image]) == 0))
            if num_gt == 0:
                continue
            for det_idx, max_det in enumerate(self.max_detections):
                dt_scores = np.concatenate([r["dtScores"][:max_det] for r in per_image])
                order = np.argsort(-dt_scores, kind="mergesort")
                matched = np.concatenate([r["dtMatches"][:, :max_det] for r in per_image], axis=1)[:, order]
                ignored = np.concatenate([r["dtIgnore"][:, :max_det] for r in per_image], axis=1)[:, order]
                self.check_number_of_iou(matched, ignored)
                counted = np.logical_not(ignored)
                tp = np.cumsum(np.logical_and(matched, counted), axis=1).astype(np.float64)
                fp = np.cumsum(np.logical_and(np.logical_not(matched), counted), axis=1).astype(np.float64)
                for t in range(n_iou):
                    r, p, s = _compute_stats_single_threshold(
                        tp[t], fp[t], dt_scores[order], self.recall_thresholds, num_gt
                    )
                    recall[t, cls_idx, det_idx] = r
                    precision[t, :, cls_idx, det_idx] = p
                    scores[t, :, cls_idx, det_idx] = s
        return {"counts": [n_iou, n_recall, n_classes, n_max_det], "recall": recall, "precision": precision,
                "scores": scores}


def _froc_curve_sorted(
    fp_probs: np.ndarray, tp_probs: np.ndarray, num_targets: int, num_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """MONAI's :func:`~monai.metrics.froc.compute_froc_curve_data` by sorting instead of one pass per threshold
    (O(n log n), the same arrays): thresholds are the distinct probabilities but the lowest, then the point (0, 0)."""
    fp_sorted, tp_sorted = np.sort(fp_probs), np.sort(tp_probs)
    thresholds = np.unique(np.concatenate([fp_sorted, tp_sorted]))[1:]
    total_fps = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")  # count of probs >= threshold
    total_tps = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    return np.append(total_fps, 0) / float(num_images), np.append(total_tps, 0) / float(num_targets)


def _nan_if_negative(value: float) -> float:
    return float("nan") if value < 0 else float(value)


class DetectionEvaluation:
    """The detections and truth boxes of a set of images, matched once; every metric (and its bootstrap CI) of any
    resample of the images from those matches.

    Args:
        pred_boxes: per image ``(N_i, 2 * spatial_dims)`` predicted boxes (tensor, array or nested list).
        pred_scores: per image ``(N_i,)`` scores.
        gt_boxes: per image ``(M_i, 2 * spatial_dims)`` truth boxes (``M_i = 0``: no lesion).
        score_threshold: selection-score cutoff (a detection counts when its score is ``> score_threshold``).
        froc_iou: IoU at or above which a detection hits a truth box for FROC.
        fp_rates: false positives per image of the FROC sensitivities.
        max_detections: COCO's maximum detections per image, increasing; AP uses the last.
        spatial_dims: 2 or 3.

    Raises:
        ValueError: lists of different lengths, boxes of the wrong shape, scores not one per box.
    """

    def __init__(
        self,
        pred_boxes: Sequence[Any],
        pred_scores: Sequence[Any],
        gt_boxes: Sequence[Any],
        score_threshold: float = 0.45,
        froc_iou: float = 0.1,
        fp_rates: Sequence[float] = FROC_FP_RATES,
        max_detections: Sequence[int] = (1, 10, 100),
        spatial_dims: int = 2,
    ) -> None:
        if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
            raise ValueError(f"need one entry per image: {len(pred_boxes)} pred_boxes, {len(pred_scores)} "
                             f"pred_scores, {len(gt_boxes)} gt_boxes.")
        max_detections = tuple(int(d) for d in max_detections)
        if not max_detections or list(max_detections) != sorted(max_detections) or max_detections[0] < 1:
            raise ValueError(f"max_detections must be increasing positive counts, got {max_detections}.")
        if not 0 < froc_iou <= 1:
            raise ValueError(f"froc_iou must be in (0, 1], got {froc_iou}.")
        self.score_threshold = float(score_threshold)
        self.froc_iou = float(froc_iou)
        self.fp_rates = tuple(float(f) for f in fp_rates)
        self.max_detections = max_detections
        self.spatial_dims = int(spatial_dims)
        self.pred_boxes = [_as_boxes(b, spatial_dims, f"pred_boxes[{i}]") for i, b in enumerate(pred_boxes)]
        self.pred_scores = [_as_array(s if s is not None else []).reshape(-1) for s in pred_scores]
        self.gt_boxes = [_as_boxes(b, spatial_dims, f"gt_boxes[{i}]") for i, b in enumerate(gt_boxes)]
        for i, (b, s) in enumerate(zip(self.pred_boxes, self.pred_scores)):
            if len(b) != len(s):
                raise ValueError(f"image {i}: {len(b)} predicted boxes but {len(s)} scores.")
        self.names = detection_metric_names(self.fp_rates, self.max_detections)
        self.coco = ExactCOCOMetric(
            classes=["lesion"], iou_list=(0.5, 0.75), iou_range=(0.5, 0.95, 0.05), max_detection=max_detections,
            per_class=False, verbose=False,
        )
        n = len(self.gt_boxes)
        zeros = [np.zeros(len(b), dtype=np.int64) for b in self.pred_boxes]
        gt_zeros = [np.zeros(len(b), dtype=np.int64) for b in self.gt_boxes]
        self._coco_matches = matching_batch(
            box_iou_exact, self.coco.iou_thresholds, self.pred_boxes, zeros, self.pred_scores, self.gt_boxes,
            gt_zeros, max_detections=max_detections[-1],
        )
        froc_matches = matching_batch(
            box_iou_exact, [self.froc_iou], self.pred_boxes, zeros, self.pred_scores, self.gt_boxes, gt_zeros,
            max_detections=max_detections[-1],
        )
        # per image: scores of the FROC false positives, of the true positives, number of truth boxes
        self._fp_scores, self._tp_scores = [], []
        for match in froc_matches:
            m = match.get(0)
            hit = np.zeros(0, dtype=bool) if m is None else m["dtMatches"][0].astype(bool)
            scores = np.zeros(0) if m is None else np.asarray(m["dtScores"], dtype=np.float64)
            self._fp_scores.append(scores[~hit])
            self._tp_scores.append(scores[hit])
        self.n_truth = np.array([len(b) for b in self.gt_boxes], dtype=np.int64)
        self.has_truth = self.n_truth > 0
        # the selection score: per image outcome, the chosen detection and its IoU
        self.selected = np.full(n, -1, dtype=np.int64)
        self.selected_iou = np.zeros(n, dtype=np.float64)
        self.outcomes = np.empty(n, dtype=object)
        for i in range(n):
            above = np.flatnonzero(self.pred_scores[i] > self.score_threshold)
            if above.size:
                self.selected[i] = above[np.argmax(self.pred_scores[i][above])]
            has_det = above.size > 0
            if has_det and self.has_truth[i]:
                self.outcomes[i] = "TP"
                self.selected_iou[i] = float(box_iou_exact(self.pred_boxes[i][self.selected[i]][None],
                                                           self.gt_boxes[i]).max())
            else:
                self.outcomes[i] = "FP" if has_det else "FN" if self.has_truth[i] else "TN"

    def __len__(self) -> int:
        return len(self.gt_boxes)

    # ----------------------------------------------------------------------------------------------- the metrics
    def _coco_values(self, idx: np.ndarray) -> dict[str, float]:
        results, _ = self.coco.compute([self._coco_matches[i] for i in idx])
        lo, hi, step = self.coco.iou_range
        rng = f"IoU_{lo:.2f}_{hi:.2f}_{step:.2f}"
        last = self.max_detections[-1]
        values = {
            "map": results[f"mAP_{rng}_MaxDet_{last}"],
            "ap50": results[f"AP_IoU_0.50_MaxDet_{last}"],
            "ap75": results[f"AP_IoU_0.75_MaxDet_{last}"],
            **{f"mar_{d}": results[f"mAR_{rng}_MaxDet_{d}"] for d in self.max_detections[:-1]},
            "mar": results[f"mAR_{rng}_MaxDet_{last}"],
        }
        return {k: _nan_if_negative(v) for k, v in values.items()}

    def _froc_data(self, idx: np.ndarray, fast: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
        """``(fps_per_image, sensitivity, num_targets)`` of MONAI's curve function over the images ``idx`` (``fast``:
        of its O(n log n) twin :func:`_froc_curve_sorted`, for the bootstrap resamples)."""
        num_targets = int(self.n_truth[idx].sum())
        if num_targets == 0 or len(idx) == 0:
            return np.zeros(0), np.zeros(0), num_targets
        fp = np.concatenate([np.zeros(0), *(self._fp_scores[i] for i in idx), [-np.inf]])  # sentinel: dropped
        missed = num_targets - sum(len(self._tp_scores[i]) for i in idx)
        tp = np.concatenate([np.zeros(0), *(self._tp_scores[i] for i in idx), np.full(missed, -np.inf)])
        curve = _froc_curve_sorted if fast else compute_froc_curve_data
        fps, sens = curve(fp, tp, num_targets, len(idx))
        return np.asarray(fps, dtype=np.float64), np.asarray(sens, dtype=np.float64), num_targets

    def _froc_values(self, idx: np.ndarray, fast: bool = False) -> dict[str, float]:
        fps, sens, num_targets = self._froc_data(idx, fast)
        if num_targets == 0:
            return {"froc": float("nan"), **{f"froc_{f:g}": float("nan") for f in self.fp_rates}}
        at = {f"froc_{f:g}": float(compute_froc_score(fps, sens, (f,))) for f in self.fp_rates}
        return {"froc": float(compute_froc_score(fps, sens, self.fp_rates)), **at}

    def _selection_value(self, idx: np.ndarray) -> float:
        if len(idx) == 0:
            return float("nan")
        outcomes = self.outcomes[idx]
        counted = int(np.sum(outcomes != "TN"))
        return 1.0 if counted == 0 else float(self.selected_iou[idx].sum() / counted)

    def metrics(self, indices: Sequence[int] | np.ndarray | None = None, fast: bool = False) -> dict[str, float]:
        """Every metric (keys :attr:`names`) over the images ``indices`` (repeats allowed; default all).

        ``fast``: the FROC curve by :func:`_froc_curve_sorted` (the same numbers as MONAI's O(n^2)
        ``compute_froc_curve_data``; used for the bootstrap resamples).
        """
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        values = {**self._coco_values(idx), **self._froc_values(idx, fast),
                  "selection_score": self._selection_value(idx)}
        return {k: values[k] for k in self.names}

    def report(self, n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05, stratified: bool = True) -> dict:
        """Every metric with its percentile bootstrap interval over images.

        Args:
            n_resamples: bootstrap resamples; 0 skips the intervals (``ci_low``/``ci_high`` NaN).
            seed: bootstrap seed.
            alpha: 0.05 for 95% intervals.
            stratified: resample the images with and without a truth box separately.

        Returns:
            ``{"n_images", "n_images_with_truth", "n_truth", "n_detections", "outcomes": {"TP", "FP", "FN", "TN"},
            "settings": {...}, "alpha", "n_resamples", "seed", "stratified",
            "metrics": {name: {"value", "ci_low", "ci_high"}}, "froc_curve": {"fps_per_image", "sensitivity"}}``.
        """
        if n_resamples < 0 or not 0 < alpha < 1:
            raise ValueError(f"need n_resamples >= 0 and 0 < alpha < 1, got {n_resamples} and {alpha}.")
        point = self.metrics()
        if n_resamples > 0 and len(self):
            groups = self.has_truth.astype(np.int64)
            indices = _resample_indices(groups, n_resamples, seed, stratified)
            resampled = (self.metrics(idx, fast=True) for idx in indices)
            samples = np.array([[values[k] for k in self.names] for values in resampled])
            low, high = _interval(samples, alpha)
        else:
            low = high = np.full(len(self.names), np.nan)
        fps, sens, _ = self._froc_data(np.arange(len(self)))
        return {
            "n_images": len(self),
            "n_images_with_truth": int(self.has_truth.sum()),
            "n_truth": int(self.n_truth.sum()),
            "n_detections": int(sum(len(s) for s in self.pred_scores)),
            "outcomes": {o: int(np.sum(self.outcomes == o)) for o in OUTCOMES},
            "settings": self.settings(),
            "alpha": alpha,
            "n_resamples": int(n_resamples),
            "seed": int(seed),
            "stratified": bool(stratified),
            "metrics": {k: {"value": point[k], "ci_low": float(lo), "ci_high": float(hi)}
                        for k, lo, hi in zip(self.names, low, high)},
            "froc_curve": {"fps_per_image": fps.tolist(), "sensitivity": sens.tolist()},
        }

    def settings(self) -> dict[str, Any]:
        """The arguments that define the metrics (to rebuild an identical evaluation)."""
        return {"score_threshold": self.score_threshold, "froc_iou": self.froc_iou, "fp_rates": list(self.fp_rates),
                "max_detections": list(self.max_detections), "spatial_dims": self.spatial_dims}

    # ---------------------------------------------------------------------------------------------- report rows
    def image_rows(self, case_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per image: ``case_id, n_truth, n_pred, best_iou`` (highest IoU of any detection with any truth box, 0
        without a pair), ``selected_score`` (NaN without a detection above the cutoff), ``selected_iou`` (what the
        image adds to the selection score) and ``outcome`` (TP / FP / FN / TN)."""
        case_ids = self._case_ids(case_ids)
        rows = []
        for i, cid in enumerate(case_ids):
            iou = box_iou_exact(self.pred_boxes[i], self.gt_boxes[i])
            rows.append({
                "case_id": cid, "n_truth": int(self.n_truth[i]), "n_pred": len(self.pred_scores[i]),
                "best_iou": float(iou.max()) if iou.size else 0.0,
                "selected_score": float(self.pred_scores[i][self.selected[i]]) if self.selected[i] >= 0 else
                float("nan"),
                "selected_iou": float(self.selected_iou[i]), "outcome": str(self.outcomes[i]),
            })
        return rows

    def detection_rows(self, case_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per detection, in decreasing score per image: ``case_id, score``, the box as ``x1, y1, x2, y2`` (x =
        column, y = row; 2D only), ``iou`` (IoU with its best-overlapping truth box, 0 without truth), ``froc_hit``
        (1 when it is a FROC true positive) and ``selected`` (1 for the image's selection-score detection)."""
        if self.spatial_dims != 2:
            raise ValueError("detection rows are written for 2D boxes only.")
        case_ids = self._case_ids(case_ids)
        rows = []
        for i, cid in enumerate(case_ids):
            boxes, scores = self.pred_boxes[i], self.pred_scores[i]
            iou = box_iou_exact(boxes, self.gt_boxes[i])
            best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(boxes))
            order = np.argsort(-scores, kind="mergesort")
            # FROC hits in the same order as matching_batch (decreasing score, mergesort), first max_det detections
            hits = np.zeros(len(boxes), dtype=bool)
            m = matching_batch(box_iou_exact, [self.froc_iou], [boxes], [np.zeros(len(boxes))], [scores],
                               [self.gt_boxes[i]], [np.zeros(len(self.gt_boxes[i]))],
                               max_detections=self.max_detections[-1])[0].get(0)
            if m is not None and len(m["dtScores"]):
                hits[order[: len(m["dtScores"])]] = m["dtMatches"][0].astype(bool)
            for j in order:
                r0, c0, r1, c1 = (float(v) for v in boxes[j])
                rows.append({"case_id": cid, "score": float(scores[j]), "x1": c0, "y1": r0, "x2": c1, "y2": r1,
                             "iou": float(best[j]), "froc_hit": int(hits[j]), "selected": int(j == self.selected[i])})
        return rows

    def _case_ids(self, case_ids: Sequence[str] | None) -> list[str]:
        if case_ids is None:
            return [f"case_{i:04d}" for i in range(len(self))]
        if len(case_ids) != len(self):
            raise ValueError(f"{len(case_ids)} case ids for {len(self)} images.")
        return [str(c) for c in case_ids]


def detection_metrics(
    pred_boxes: Sequence[Any], pred_scores: Sequence[Any], gt_boxes: Sequence[Any], **kwargs: Any
) -> dict[str, float]:
    """Every detection metric of per-image lists (keys :data:`DETECTION_METRICS` with the default settings).

    Args:
        pred_boxes: per image ``(N_i, 4)`` standard-mode boxes ``[r0, c0, r1, c1]``.
        pred_scores: per image ``(N_i,)`` scores.
        gt_boxes: per image ``(M_i, 4)`` truth boxes.
        kwargs: the settings of :class:`DetectionEvaluation` (``score_threshold``, ``froc_iou``, ``fp_rates``,
            ``max_detections``, ``spatial_dims``).
    """
    return DetectionEvaluation(pred_boxes, pred_scores, gt_boxes, **kwargs).metrics()


def detection_report(
    pred_boxes: Sequence[Any],
    pred_scores: Sequence[Any],
    gt_boxes: Sequence[Any],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """:meth:`DetectionEvaluation.report` of per-image lists (every metric with its bootstrap CI over images)."""
    evaluation = DetectionEvaluation(pred_boxes, pred_scores, gt_boxes, **kwargs)
    return evaluation.report(n_resamples=n_resamples, seed=seed, alpha=alpha, stratified=stratified)


# ------------------------------------------------------------------------------------------ Cumulative + handler
_IMAGE, _PRED, _TRUTH = 0.0, 1.0, 2.0


class DetectionMetric(Cumulative):
    """Buffers the detections and truth boxes of every image; :meth:`aggregate` computes every detection metric over
    the whole set (mAP, FROC and the selection score are not means of per-batch values).

    One float64 buffer of rows ``(kind, score, *box)``: an image row (kind 0) followed by its detections (kind 1)
    and truth boxes (kind 2), so under DDP :meth:`get_buffer` gathers every rank's images in rank order (the order of
    :func:`~pipelines.metrics.handlers.gather_strings` for the case ids).

    Example::

        metric = DetectionMetric()
        for batch in loader:
            metric(pred_boxes, pred_scores, gt_boxes, case_ids)  # per-image lists
        metric.aggregate()  # {"map": ..., "ap50": ..., "froc": ..., "selection_score": ...}
        metric.report(n_resamples=1000)  # with bootstrap CIs

    Args:
        score_threshold, froc_iou, fp_rates, max_detections, spatial_dims: see :class:`DetectionEvaluation`.
        n_resamples: bootstrap resamples of :meth:`report` (0: no intervals).
        seed: bootstrap seed.
        alpha: 0.05 for 95% intervals.
    """

    def __init__(
        self,
        score_threshold: float = 0.45,
        froc_iou: float = 0.1,
        fp_rates: Sequence[float] = FROC_FP_RATES,
        max_detections: Sequence[int] = (1, 10, 100),
        spatial_dims: int = 2,
        n_resamples: int = 0,
        seed: int = 0,
        alpha: float = 0.05,
    ) -> None:
        super().__init__()
        self.settings = {"score_threshold": float(score_threshold), "froc_iou": float(froc_iou),
                         "fp_rates": tuple(float(f) for f in fp_rates),
                         "max_detections": tuple(int(d) for d in max_detections), "spatial_dims": int(spatial_dims)}
        self.spatial_dims = int(spatial_dims)
        self.n_resamples = int(n_resamples)
        self.seed = int(seed)
        self.alpha = float(alpha)
        self.names = detection_metric_names(self.settings["fp_rates"], self.settings["max_detections"])

    def reset(self) -> None:
        super().reset()
        self._case_ids: list[str] = []

    def __call__(
        self,
        pred_boxes: Sequence[Any],
        pred_scores: Sequence[Any],
        gt_boxes: Sequence[Any],
        case_ids: Sequence[str] | None = None,
    ) -> None:
        """Add a batch of images.

        Args:
            pred_boxes: per image ``(N_i, 2 * spatial_dims)`` predicted boxes.
            pred_scores: per image ``(N_i,)`` scores.
            gt_boxes: per image ``(M_i, 2 * spatial_dims)`` truth boxes.
            case_ids: one per image; default ``case_0000``, ... (by position in this rank's buffer).
        """
        if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
            raise ValueError(f"need one entry per image: {len(pred_boxes)} pred_boxes, {len(pred_scores)} "
                             f"pred_scores, {len(gt_boxes)} gt_boxes.")
        if case_ids is not None and len(case_ids) != len(gt_boxes):
            raise ValueError(f"{len(case_ids)} case ids for {len(gt_boxes)} images.")
        width = 2 + 2 * self.spatial_dims
        rows = []
        for i, (pb, ps, gb) in enumerate(zip(pred_boxes, pred_scores, gt_boxes)):
            pb = _as_boxes(pb, self.spatial_dims, f"pred_boxes[{i}]")
            ps = _as_array(ps if ps is not None else []).reshape(-1)
            gb = _as_boxes(gb, self.spatial_dims, f"gt_boxes[{i}]")
            if len(pb) != len(ps):
                raise ValueError(f"image {i}: {len(pb)} predicted boxes but {len(ps)} scores.")
            image = np.zeros((1, width))
            preds = np.concatenate([np.full((len(pb), 1), _PRED), ps[:, None], pb], axis=1)
            truths = np.concatenate([np.full((len(gb), 1), _TRUTH), np.zeros((len(gb), 1)), gb], axis=1)
            rows.append(np.concatenate([image, preds, truths], axis=0))
            start = len(self._case_ids)
            self._case_ids.append(str(case_ids[i]) if case_ids is not None else f"case_{start:04d}")
        if rows:
            self.extend(torch.from_numpy(np.concatenate(rows, axis=0)))

    def images(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """``(pred_boxes, pred_scores, gt_boxes)`` per buffered image (all ranks under DDP), in buffer order."""
        buffer = self.get_buffer()
        pred_boxes: list[np.ndarray] = []
        pred_scores: list[np.ndarray] = []
        gt_boxes: list[np.ndarray] = []
        if buffer is None:
            return pred_boxes, pred_scores, gt_boxes
        rows = buffer.numpy().reshape(-1, 2 + 2 * self.spatial_dims)
        starts = np.flatnonzero(rows[:, 0] == _IMAGE)
        for start, stop in zip(starts, [*starts[1:], len(rows)]):
            block = rows[start + 1 : stop]
            pred, truth = block[block[:, 0] == _PRED], block[block[:, 0] == _TRUTH]
            pred_boxes.append(pred[:, 2:])
            pred_scores.append(pred[:, 1])
            gt_boxes.append(truth[:, 2:])
        return pred_boxes, pred_scores, gt_boxes

    def case_ids(self) -> list[str]:
        """Ids of the buffered images (all ranks under DDP, rank order)."""
        return gather_strings(list(self._case_ids))

    def evaluation(self) -> DetectionEvaluation:
        """A :class:`DetectionEvaluation` of the buffered images."""
        return DetectionEvaluation(*self.images(), **self.settings)

    def report(self, n_resamples: int | None = None) -> dict[str, Any]:
        """:meth:`DetectionEvaluation.report` of the buffered images."""
        n = self.n_resamples if n_resamples is None else n_resamples
        return self.evaluation().report(n_resamples=n, seed=self.seed, alpha=self.alpha)

    def aggregate(self) -> dict[str, float]:  # type: ignore[override]
        """``{metric: value}`` of the buffered images (NaN for all when there is none)."""
        pred_boxes, _, _ = self.images()
        if not pred_boxes:
            return {k: float("nan") for k in self.names}
        return self.evaluation().metrics()


def detection_output_transform(output: Any) -> tuple[list, list, list, list | None]:
    """``(pred_box, pred_score, box, case_id)`` per-image lists of the detection evaluation step's output: a dict of
    per-image lists (``{"pred_box": [...], "pred_score": [...], "box": [...], "case_id": [...]}``) or a list of
    per-image dicts with those keys (MONAI's decollated output). ``case_id`` may be missing (None)."""
    keys = ("pred_box", "pred_score", "box")
    if isinstance(output, Mapping):
        missing = [k for k in keys if k not in output]
        if missing:
            raise KeyError(f"the evaluation output lacks {missing}; has {sorted(output)}.")
        ids = output.get("case_id")
        return list(output["pred_box"]), list(output["pred_score"]), list(output["box"]), \
            (list(ids) if ids is not None else None)
    if isinstance(output, Sequence) and all(isinstance(o, Mapping) for o in output):
        lists = [detection_output_transform({k: [o[k]] for k in (*keys, "case_id") if k in o}) for o in output]
        ids = [item[3][0] for item in lists if item[3] is not None]
        return ([item[0][0] for item in lists], [item[1][0] for item in lists], [item[2][0] for item in lists],
                ids if len(ids) == len(lists) else None)
    raise TypeError(f"expected a dict of per-image lists or a list of per-image dicts, got {type(output).__name__}.")


class DetectionMetricsHandler(IgniteMetricHandler):
    """Every detection metric of an evaluator run, one of them (``key``) the metric of the handler's name (the key
    metric for checkpoint selection).

    After each run: ``engine.state.metrics[name]`` holds the ``key`` metric, ``engine.state.metrics[f"{name}_{k}"]``
    every metric ``k`` of :func:`detection_metric_names` (``map, ap50, ap75, mar_1, mar_10, mar, froc,
    froc_0.125, ..., froc_8, selection_score``), with ``_ci_low``/``_ci_high`` when ``n_resamples > 0``, and
    ``engine.state.metric_details[name]`` ``{"case_ids", "pred_box", "pred_score", "box", "settings"}`` (per-image
    numpy arrays of all ranks), which :class:`~pipelines.evaluation.DetectionReportHandler` turns into the report.
    Gathered across ranks under DDP (:class:`DetectionMetric`).

    Args:
        key: the metric of ``engine.state.metrics[name]``, one of :func:`detection_metric_names`.
        output_transform: ``engine.state.output`` -> ``(pred_box, pred_score, box[, case_id])`` per-image lists;
            default :func:`detection_output_transform` (the detection evaluation step's dict).
        score_threshold, froc_iou, fp_rates, max_detections, spatial_dims: see :class:`DetectionEvaluation`.
        n_resamples: bootstrap resamples for CIs in ``engine.state.metrics`` (0: none, as usual per epoch).
        seed: bootstrap seed.
        save_details: keep the per-image boxes in ``engine.state.metric_details[name]``.
    """

    required_output_keys = ("pred_box", "pred_score", "box", "case_id")

    def __init__(
        self,
        key: str = "map",
        output_transform: Callable = detection_output_transform,
        score_threshold: float = 0.45,
        froc_iou: float = 0.1,
        fp_rates: Sequence[float] = FROC_FP_RATES,
        max_detections: Sequence[int] = (1, 10, 100),
        spatial_dims: int = 2,
        n_resamples: int = 0,
        seed: int = 0,
        save_details: bool = True,
    ) -> None:
        metric_fn = DetectionMetric(score_threshold, froc_iou, fp_rates, max_detections, spatial_dims,
                                    n_resamples=n_resamples, seed=seed)
        if key not in metric_fn.names:
            raise ValueError(f"key must be one of {metric_fn.names}, got {key!r}.")
        self.key = key
        self.values: dict[str, float] = {}
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
        self._skip_unrolling = True  # per-image lists of different lengths: never split into items

    def update(self, output: Sequence[Any]) -> None:
        if len(output) not in (3, 4):
            raise ValueError(f"output_transform must give (pred_box, pred_score, box[, case_id]), got {len(output)} "
                             "items.")
        pred_box, pred_score, box = output[:3]
        case_id = output[3] if len(output) == 4 else None
        self.metric_fn(pred_box, pred_score, box, case_ids=case_id)

    def compute(self) -> float:
        metric_fn: DetectionMetric = self.metric_fn  # type: ignore[assignment]
        report = metric_fn.report()
        values: dict[str, float] = {}
        for k, entry in report["metrics"].items():
            values[k] = entry["value"]
            if report["n_resamples"]:
                values[f"{k}_ci_low"], values[f"{k}_ci_high"] = entry["ci_low"], entry["ci_high"]
        self.values = values
        case_ids = metric_fn.case_ids()
        if self._engine is not None and self._name is not None:
            self._engine.state.metrics.update({f"{self._name}_{k}": v for k, v in values.items()})
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("call attach() before compute().")
            pred_box, pred_score, box = metric_fn.images()
            self._engine.state.metric_details[self._name] = {
                "case_ids": case_ids, "pred_box": pred_box, "pred_score": pred_score, "box": box,
                "settings": dict(metric_fn.settings),
            }
        self._is_reduced = True
        return float(values[self.key])
