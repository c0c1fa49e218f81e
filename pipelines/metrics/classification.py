"""Classification metrics from predicted probabilities, with seeded bootstrap confidence intervals.

Conventions (shared by every bundle; the segmentation conventions are in :mod:`pipelines.metrics.segmentation`):

* ``y_true`` holds integer labels ``(N,)``; ``y_prob`` is ``(N, K)`` class probabilities, or ``(N,)`` the
  probability of class 1 of a binary problem (read as ``[1 - p, p]``).
* Predicted labels: ``argmax`` for ``K > 2``; for binary problems ``p(class 1) >= threshold`` (default 0.5).
* ROC AUC is the Mann-Whitney statistic: the probability that a random positive scores higher than a random negative,
  ties counting one half (equal to the area under the trapezoid ROC curve). Binary problems report the AUC of
  class 1; ``K > 2`` reports one-vs-rest AUC per class and their unweighted (macro) mean.
* Undefined values are NaN, never an exception inside a report: the AUC of a class absent from ``y_true`` (or of a
  class that is every sample), the sensitivity of an absent class, the specificity of a class that is every sample,
  the F1 of a class never present nor predicted. Precision is 0 when a class is never predicted (scikit-learn's
  ``zero_division=0``), so a classifier that never predicts a present class is penalised. Macro means ignore NaN;
  a macro value is NaN only when no class is defined.
* Expected calibration error (Guo et al., ICML 2017): confidences (the top-class probability) in ``n_bins``
  equal-width bins ``[0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]``; ECE = sum over bins of
  ``(n_bin / N) * |accuracy_bin - mean confidence_bin|``.
* Youden's J (binary problems only): the threshold ``t`` on ``p(class 1)`` (predicting class 1 when ``p >= t``) that
  maximises ``sensitivity + specificity - 1`` on the given cases, among the distinct probabilities; ties go to the
  highest such ``t`` (the first maximum along the ROC curve); :func:`youden_point`. The report's
  ``youden_threshold``, ``sensitivity_youden`` and ``specificity_youden`` are optimised and measured on the same
  cases (optimistic on a test set); their bootstrap CIs re-optimise the threshold on every resample.
* Bootstrap CIs: percentile intervals of the metric over ``n_resamples`` resamples of the cases with replacement,
  stratified by true class (each resample keeps the class counts) by default, from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import Cumulative
from scipy.stats import rankdata

__all__ = [
    "ClassificationMetrics",
    "accuracy",
    "balanced_accuracy",
    "bootstrap_ci",
    "classification_report",
    "confusion_matrix",
    "expected_calibration_error",
    "f1_score",
    "per_class_rates",
    "precision",
    "predict_labels",
    "roc_auc",
    "roc_auc_per_class",
    "sensitivity",
    "specificity",
    "youden_point",
]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_inputs(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels ``(N,)`` and probabilities ``(N, K)``, ``K >= 2``."""
    y_true = _to_numpy(y_true)
    y_prob = _to_numpy(y_prob).astype(np.float64)
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be (N,) integer labels, got shape {y_true.shape}.")
    if y_prob.ndim == 2 and y_prob.shape[1] == 1:
        y_prob = y_prob[:, 0]
    if y_prob.ndim == 1:
        y_prob = np.stack([1.0 - y_prob, y_prob], axis=1)
    if y_prob.ndim != 2 or y_prob.shape[0] != y_true.shape[0] or y_prob.shape[1] < 2:
        raise ValueError(f"y_prob must be (N,) or (N, K>=2) for N={y_true.shape[0]} labels, got {y_prob.shape}.")
    if not np.all(np.isfinite(y_prob)):
        raise ValueError("y_prob contains NaN or inf.")
    if y_true.size and (np.any(y_true != np.round(y_true)) or y_true.min() < 0 or y_true.max() >= y_prob.shape[1]):
        raise ValueError(f"y_true must hold integer labels in [0, {y_prob.shape[1] - 1}], got {np.unique(y_true)}.")
    return y_true.astype(np.int64), y_prob


def predict_labels(y_prob: Any, threshold: float = 0.5) -> np.ndarray:
    """Predicted labels: ``p(class 1) >= threshold`` for binary problems, ``argmax`` otherwise.

    Args:
        y_prob: ``(N,)`` binary probabilities of class 1 or ``(N, K)`` class probabilities.
        threshold: decision threshold of binary problems.
    """
    _, y_prob = _check_inputs(np.zeros(len(_to_numpy(y_prob)), dtype=np.int64), y_prob)
    return _predict(y_prob, threshold)


def _predict(y_prob: np.ndarray, threshold: float) -> np.ndarray:
    if y_prob.shape[1] == 2:
        return (y_prob[:, 1] >= threshold).astype(np.int64)
    return np.argmax(y_prob, axis=1).astype(np.int64)


def _auc_columns(is_positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each column of ``scores (N, K)`` for the positives ``is_positive (N, K)``.

    ``AUC = (R+ - n+ (n+ + 1) / 2) / (n+ n-)`` with ``R+`` the sum of the positives' mid-ranks, so a tied
    positive/negative pair counts one half. NaN for a column without positives or without negatives.
    """
    n_pos = is_positive.sum(axis=0).astype(np.float64)
    n_neg = is_positive.shape[0] - n_pos
    ranks = rankdata(scores, axis=0)  # average ranks for ties
    rank_sum = np.where(is_positive, ranks, 0.0).sum(axis=0)
    return _ratio(rank_sum - n_pos * (n_pos + 1) / 2.0, n_pos * n_neg)


def _binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC of one score vector; NaN without positives or without negatives."""
    return float(_auc_columns(is_positive[:, None], scores[:, None])[0])


def roc_auc_per_class(y_true: Any, y_prob: Any) -> np.ndarray:
    """One-vs-rest ROC AUC of every class ``(K,)``; NaN for a class absent from ``y_true`` or equal to all of it."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return _auc_columns(y_true[:, None] == np.arange(y_prob.shape[1]), y_prob)


def roc_auc(y_true: Any, y_prob: Any) -> float:
    """ROC AUC: class 1's AUC for binary problems, the macro one-vs-rest mean for ``K > 2`` (NaN classes skipped).

    Args:
        y_true: ``(N,)`` integer labels.
        y_prob: ``(N,)`` probabilities of class 1 or ``(N, K)`` class probabilities.

    Returns:
        AUC in [0, 1]; NaN when it is undefined (e.g. a binary problem with one class only).
    """
    y_true, y_prob = _check_inputs(y_true, y_prob)
    if y_prob.shape[1] == 2:
        return _binary_auc(y_true == 1, y_prob[:, 1])
    return _nanmean(roc_auc_per_class(y_true, y_prob))


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """``(K, K)`` counts, rows = true class, columns = predicted class.

    Args:
        y_true: ``(N,)`` integer labels.
        y_pred: ``(N,)`` integer predicted labels.
        num_classes: ``K``; default ``max(label) + 1``.
    """
    y_true = _to_numpy(y_true).astype(np.int64).ravel()
    y_pred = _to_numpy(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {y_true.shape} and {y_pred.shape}.")
    k = num_classes if num_classes is not None else int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray, zero: float = float("nan")) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, zero, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class_rates(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, precision and F1 of every class from a confusion matrix (see module conventions)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp, zero=0.0),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _rates(y_true: Any, y_prob: Any, threshold: float) -> dict[str, np.ndarray]:
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return per_class_rates(confusion_matrix(y_true, predict_labels(y_prob, threshold), y_prob.shape[1]))


def _average(per_class: np.ndarray, average: str | None) -> np.ndarray | float:
    if average is None:
        return per_class
    if average == "macro":
        return _nanmean(per_class)
    raise ValueError(f"average must be 'macro' or None, got {average!r}.")


def sensitivity(y_true: Any, y_prob: Any, average: str | None = "macro", threshold: float = 0.5):
    """Sensitivity (recall) TP / (TP + FN): per class ``(K,)`` with ``average=None``, else the macro mean."""
    return _average(_rates(y_true, y_prob, threshold)["sensitivity"], average)


def specificity(y_true: Any, y_prob: Any, average: str | None = "macro", threshold: float = 0.5):
    """Specificity TN / (TN + FP): per class ``(K,)`` with ``average=None``, else the macro mean."""
    return _average(_rates(y_true, y_prob, threshold)["specificity"], average)


def precision(y_true: Any, y_prob: Any, average: str | None = "macro", threshold: float = 0.5):
    """Precision TP / (TP + FP), 0 for a never-predicted class: per class with ``average=None``, else macro."""
    return _average(_rates(y_true, y_prob, threshold)["precision"], average)


def f1_score(y_true: Any, y_prob: Any, average: str | None = "macro", threshold: float = 0.5):
    """F1 = 2 TP / (2 TP + FP + FN): per class ``(K,)`` with ``average=None``, else the macro mean."""
    return _average(_rates(y_true, y_prob, threshold)["f1"], average)


def accuracy(y_true: Any, y_prob: Any, threshold: float = 0.5) -> float:
    """Fraction of correctly predicted cases."""
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return float(np.mean(predict_labels(y_prob, threshold) == y_true)) if y_true.size else float("nan")


def balanced_accuracy(y_true: Any, y_prob: Any, threshold: float = 0.5) -> float:
    """Mean sensitivity over the classes present in ``y_true``."""
    return float(sensitivity(y_true, y_prob, average="macro", threshold=threshold))


def expected_calibration_error(y_true: Any, y_prob: Any, n_bins: int = 15, threshold: float = 0.5) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins (Guo et al. 2017).

    The confidence of a case is the probability of its predicted class (for binary problems ``max(p, 1 - p)`` at the
    default threshold). Bin ``b`` holds confidences in ``[b / n_bins, (b + 1) / n_bins)``, the last bin includes 1.

    Args:
        y_true: ``(N,)`` integer labels.
        y_prob: ``(N,)`` or ``(N, K)`` probabilities.
        n_bins: number of bins.
        threshold: decision threshold of binary problems.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    y_true, y_prob = _check_inputs(y_true, y_prob)
    return _ece(y_true, y_prob, _predict(y_prob, threshold), n_bins)


def _ece(y_true: np.ndarray, y_prob: np.ndarray, y_pred: np.ndarray, n_bins: int) -> float:
    if not y_true.size:
        return float("nan")
    confidence = y_prob[np.arange(len(y_pred)), y_pred]
    correct = (y_pred == y_true).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    # sum over bins of (n_b / N) |acc_b - conf_b| = sum over bins of |sum_b(correct) - sum_b(confidence)| / N
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(y_true))


def _resample_indices(
    y_true: np.ndarray, n_resamples: int, seed: int, stratified: bool
) -> Iterator[np.ndarray]:
    """Bootstrap index sets, reproducible from ``seed``; stratified resamples keep the count of every class."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    groups = [np.flatnonzero(y_true == k) for k in np.unique(y_true)] if stratified else [np.arange(n)]
    for _ in range(n_resamples):
        yield np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])


def _interval(samples: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN resamples (NaN where all are NaN)."""
    samples = np.asarray(samples, dtype=np.float64)
    low = np.full(samples.shape[1:], np.nan)
    high = np.full(samples.shape[1:], np.nan)
    valid = ~np.all(np.isnan(samples), axis=0)
    if np.any(valid):
        q = np.nanpercentile(samples[:, valid], [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        low[valid], high[valid] = q[0], q[1]
    return low, high


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Any,
    y_prob: Any,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap ``(1 - alpha)`` confidence interval of ``metric_fn(y_true, y_prob)``.

    Args:
        metric_fn: e.g. :func:`roc_auc`, or ``lambda t, p: f1_score(t, p, average="macro")``.
        y_true: ``(N,)`` integer labels.
        y_prob: ``(N,)`` or ``(N, K)`` probabilities.
        n_resamples: number of bootstrap resamples.
        alpha: 0.05 for a 95% interval.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.
        stratified: resample within each true class, so every resample keeps the class counts (and AUC stays defined).

    Returns:
        ``(point, low, high)``; ``low``/``high`` are NaN when the metric is NaN on every resample.
    """
    if n_resamples < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_resamples >= 1 and 0 < alpha < 1, got {n_resamples} and {alpha}.")
    y_true, y_prob = _check_inputs(y_true, y_prob)
    point = float(metric_fn(y_true, y_prob))
    samples = np.array(
        [float(metric_fn(y_true[idx], y_prob[idx])) for idx in _resample_indices(y_true, n_resamples, seed, stratified)]
    )
    low, high = _interval(samples[:, None], alpha)
    return point, float(low[0]), float(high[0])


def _youden(is_positive: np.ndarray, scores: np.ndarray) -> tuple[float, float, float]:
    """``(threshold, sensitivity, specificity)`` at the maximum of Youden's J; NaN without positives or negatives."""
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan"), float("nan"), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    ranked, positive = scores[order], is_positive[order]
    tp, fp = np.cumsum(positive), np.cumsum(~positive)
    last = np.r_[np.flatnonzero(np.diff(ranked) != 0), len(ranked) - 1]  # last case of each distinct score
    tpr, fpr = tp[last] / n_pos, fp[last] / n_neg
    best = int(np.argmax(tpr - fpr))  # first maximum = the highest threshold
    return float(ranked[last[best]]), float(tpr[best]), float(1.0 - fpr[best])


def youden_point(y_true: Any, y_prob: Any) -> dict[str, float]:
    """The Youden-optimal threshold of a binary problem and the sensitivity and specificity at it.

    Args:
        y_true: ``(N,)`` labels 0/1.
        y_prob: ``(N,)`` probabilities of class 1 or ``(N, 2)`` class probabilities.

    Returns:
        ``{"threshold", "sensitivity", "specificity", "j"}``: class 1 is predicted for ``p(class 1) >= threshold``;
        ``j = sensitivity + specificity - 1``. NaN when ``y_true`` lacks a class.

    Raises:
        ValueError: ``y_prob`` has more than two classes.
    """
    y_true, y_prob = _check_inputs(y_true, y_prob)
    if y_prob.shape[1] != 2:
        raise ValueError(f"Youden's threshold needs a binary problem, got {y_prob.shape[1]} classes.")
    threshold, sens, spec = _youden(y_true == 1, y_prob[:, 1])
    return {"threshold": threshold, "sensitivity": sens, "specificity": spec, "j": sens + spec - 1.0}


def _all_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str], threshold: float, n_bins: int
) -> dict[str, float]:
    """Every scalar metric of a report, computed from one confusion matrix."""
    num_classes = y_prob.shape[1]
    y_pred = _predict(y_prob, threshold)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    rates = per_class_rates(cm)
    values: dict[str, float] = {}
    if num_classes == 2:
        values["auc"] = _binary_auc(y_true == 1, y_prob[:, 1])
    else:
        per_class_auc = _auc_columns(y_true[:, None] == np.arange(num_classes), y_prob)
        values["auc"] = _nanmean(per_class_auc)
        values.update({f"auc_{name}": float(v) for name, v in zip(class_names, per_class_auc)})
    values["accuracy"] = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    values["balanced_accuracy"] = _nanmean(rates["sensitivity"])
    for metric in ("sensitivity", "specificity", "precision", "f1"):
        values[f"{metric}_macro"] = _nanmean(rates[metric])
        values.update({f"{metric}_{name}": float(v) for name, v in zip(class_names, rates[metric])})
    values["ece"] = _ece(y_true, y_prob, y_pred, n_bins)
    if num_classes == 2:
        youden = _youden(y_true == 1, y_prob[:, 1])
        values.update(zip(("youden_threshold", "sensitivity_youden", "specificity_youden"), youden))
    return values


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    names = tuple(str(c) for c in class_names) if class_names is not None else tuple(map(str, range(num_classes)))
    if len(names) != num_classes:
        raise ValueError(f"{num_classes} classes in y_prob but {len(names)} class names: {names}.")
    return names


def classification_report(
    y_true: Any,
    y_prob: Any,
    class_names: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
    threshold: float = 0.5,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Every classification metric with its bootstrap confidence interval.

    Metric keys: ``auc`` (binary: class 1; else macro one-vs-rest) and ``auc_{class}`` for ``K > 2``, ``accuracy``,
    ``balanced_accuracy``, ``ece``, and ``{sensitivity,specificity,precision,f1}_{class}`` plus ``..._macro``;
    binary problems add ``youden_threshold``, ``sensitivity_youden`` and ``specificity_youden`` (class 1 positive,
    see :func:`youden_point`).
    All metrics use the same resamples (the indices come from ``seed`` only), so :func:`bootstrap_ci` with the same
    seed and stratification gives the same interval for a metric.

    Args:
        y_true: ``(N,)`` integer labels.
        y_prob: ``(N,)`` probabilities of class 1 or ``(N, K)`` class probabilities.
        class_names: one per class; default ``"0"``, ``"1"``, ...
        n_resamples: bootstrap resamples; 0 skips the intervals (``ci_low``/``ci_high`` are NaN).
        seed: bootstrap seed.
        alpha: 0.05 for 95% intervals.
        stratified: resample within each true class.
        threshold: decision threshold of binary problems.
        n_bins: ECE bins.

    Returns:
        ``{"n": N, "class_names": [...], "class_counts": [...], "confusion_matrix": [[...]], "alpha": alpha,
        "n_resamples": n_resamples, "seed": seed, "metrics": {key: {"value": v, "ci_low": l, "ci_high": h}}}``.
    """
    y_true, y_prob = _check_inputs(y_true, y_prob)
    names = _class_names(class_names, y_prob.shape[1])
    point = _all_metrics(y_true, y_prob, names, threshold, n_bins)
    keys = list(point)
    if n_resamples > 0:
        resampled = (
            _all_metrics(y_true[idx], y_prob[idx], names, threshold, n_bins)
            for idx in _resample_indices(y_true, n_resamples, seed, stratified)
        )
        samples = np.array([[values[k] for k in keys] for values in resampled])
        low, high = _interval(samples, alpha)
    else:
        low = high = np.full(len(keys), np.nan)
    cm = confusion_matrix(y_true, predict_labels(y_prob, threshold), y_prob.shape[1])
    return {
        "n": int(len(y_true)),
        "class_names": list(names),
        "class_counts": np.bincount(y_true, minlength=len(names)).tolist(),
        "confusion_matrix": cm.tolist(),
        "alpha": alpha,
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "metrics": {
            k: {"value": point[k], "ci_low": float(lo), "ci_high": float(hi)} for k, lo, hi in zip(keys, low, high)
        },
    }


class ClassificationMetrics(Cumulative):
    """Buffers class probabilities and labels over batches; :meth:`aggregate` computes every metric at once.

    Under DDP :meth:`get_buffer` gathers the cases of all ranks, so the AUC is computed over the whole set (AUC is not
    a mean of per-batch values).

    Args:
        class_names: one per class; default ``"0"``, ``"1"``, ...
        n_resamples: bootstrap resamples in :meth:`aggregate` (0: no intervals, the cheap per-epoch setting).
        seed: bootstrap seed.
        threshold: decision threshold of binary problems.
        n_bins: ECE bins.
    """

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        n_resamples: int = 0,
        seed: int = 0,
        threshold: float = 0.5,
        n_bins: int = 15,
    ) -> None:
        super().__init__()
        self.class_names = tuple(class_names) if class_names is not None else None
        self.n_resamples = n_resamples
        self.seed = seed
        self.threshold = threshold
        self.n_bins = n_bins

    def __call__(self, y_pred: Any, y: Any) -> None:
        """Add one batch.

        Args:
            y_pred: probabilities ``(B, K)`` (after softmax) or ``(B,)``/``(B, 1)`` probabilities of class 1, as a
                batch tensor or a list of per-item tensors.
            y: labels ``(B,)``/``(B, 1)`` or one-hot ``(B, K)``, batch or list.
        """
        if isinstance(y_pred, (list, tuple)):
            y_pred = torch.stack([torch.as_tensor(p) for p in y_pred])
        if isinstance(y, (list, tuple)):
            y = torch.stack([torch.as_tensor(t).reshape(-1) for t in y])
        y_pred = torch.as_tensor(y_pred).detach().float().cpu()
        y = torch.as_tensor(y).detach().cpu()
        if y_pred.ndim == 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1):
            p1 = y_pred.reshape(-1)
            y_pred = torch.stack([1 - p1, p1], dim=1)
        if y_pred.ndim != 2:
            raise ValueError(f"y_pred must be (B, K) probabilities, got shape {tuple(y_pred.shape)}.")
        if y.ndim == 2 and y.shape[1] == y_pred.shape[1] and y.shape[1] > 1:
            y = y.argmax(dim=1)
        y = y.reshape(-1).long()
        if y.shape[0] != y_pred.shape[0]:
            raise ValueError(f"{y.shape[0]} labels for {y_pred.shape[0]} predictions.")
        self.extend(y_pred.double(), y)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true (N,), y_prob (N, K))`` of all buffered (and, under DDP, gathered) cases."""
        buffer = self.get_buffer()
        if buffer is None:
            raise ValueError("ClassificationMetrics has no data: call it on a batch first.")
        y_prob, y_true = buffer
        return y_true.numpy(), y_prob.numpy()

    def report(self, n_resamples: int | None = None) -> dict[str, Any]:
        """:func:`classification_report` of the buffered cases."""
        y_true, y_prob = self.arrays()
        return classification_report(
            y_true,
            y_prob,
            class_names=self.class_names,
            n_resamples=self.n_resamples if n_resamples is None else n_resamples,
            seed=self.seed,
            threshold=self.threshold,
            n_bins=self.n_bins,
        )

    def aggregate(self) -> dict[str, float]:  # type: ignore[override]
        """``{metric: value}`` of the buffered cases (the keys of :func:`classification_report`)."""
        return {k: v["value"] for k, v in self.report(n_resamples=0)["metrics"].items()}
