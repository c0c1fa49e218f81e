"""Result reports for papers: per-case CSV, summary JSON with bootstrap CIs, and a Markdown table.

Segmentation (:func:`write_segmentation_report`) writes into ``out_dir``:

* ``metrics.csv``: one row per case, ``case_id`` then ``f"{metric}_{class}"`` for each class and metric;
* ``summary.json``: for each such column ``mean``, ``std`` (sample, ``ddof=1``; 0 for one case), ``median``,
  ``ci_low``/``ci_high`` (percentile bootstrap of the mean over cases, seeded) and ``n``;
* ``summary.md``: :func:`markdown_table` of the summary (classes as rows, metrics as ``mean ± std`` columns).

Classification (:func:`write_classification_report`) writes ``predictions.csv`` (one row per case),
``summary.json`` (:func:`pipelines.metrics.classification_report`) and ``summary.md``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics.classification import classification_report, predict_labels

__all__ = [
    "bootstrap_mean_ci",
    "json_safe",
    "classification_markdown_table",
    "markdown_table",
    "summarize_columns",
    "write_classification_report",
    "write_segmentation_report",
]


def bootstrap_mean_ci(
    values: Sequence[float], n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of the mean of ``values`` (resampling cases), seeded.

    Returns ``(value, value)`` for a single case and ``(nan, nan)`` for none.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _columns(class_names: Sequence[str], metrics: Sequence[str]) -> list[str]:
    return [f"{metric}_{name}" for name in class_names for metric in metrics]


def summarize_columns(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{column: {"mean", "std", "median", "ci_low", "ci_high", "n"}}`` over the rows (NaN values skipped)."""
    summary = {}
    for column in columns:
        values = np.array([float(row[column]) for row in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        n = int(values.size)
        low, high = bootstrap_mean_ci(values, n_resamples=n_resamples, alpha=alpha, seed=seed)
        summary[column] = {
            "mean": float(values.mean()) if n else float("nan"),
            "std": float(values.std(ddof=1)) if n > 1 else 0.0,
            "median": float(np.median(values)) if n else float("nan"),
            "ci_low": low,
            "ci_high": high,
            "n": n,
        }
    return summary


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(
    summary: Mapping[str, Mapping[str, float]],
    class_names: Sequence[str],
    metrics: Sequence[str],
    digits: int = 3,
    show_ci: bool = False,
) -> str:
    """Markdown table of a segmentation summary: one row per class, one ``mean ± std`` column per metric.

    Args:
        summary: output of :func:`summarize_columns` / :func:`write_segmentation_report`.
        class_names: table rows.
        metrics: table columns (``HD95`` in mm).
        digits: decimals.
        show_ci: append ``[ci_low, ci_high]`` to each cell.
    """
    header = "| Class | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 1)]
    for name in class_names:
        cells = []
        for metric in metrics:
            s = summary[f"{metric}_{name}"]
            cell = f"{_fmt(s['mean'], digits)} ± {_fmt(s['std'], digits)}"
            if show_ci:
                cell += f" [{_fmt(s['ci_low'], digits)}, {_fmt(s['ci_high'], digits)}]"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_segmentation_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    metrics: Sequence[str] = ("dice", "hd95", "nsd"),
    tb_writer: Any = None,
    step: int = 0,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    tag: str = "segmentation_metrics",
) -> dict[str, dict[str, float]]:
    """Write ``metrics.csv``, ``summary.json`` and ``summary.md`` of per-case segmentation metrics.

    Args:
        rows: one dict per case, ``{"case_id": ..., "dice_TC": ..., "hd95_TC": ..., ...}``.
        out_dir: created if missing.
        class_names: classes (table rows, CSV column groups).
        metrics: metrics per class.
        tb_writer: a TensorBoard ``SummaryWriter``: the Markdown table is logged with ``add_text(tag, ..., step)``.
        step: TensorBoard step.
        n_resamples: bootstrap resamples of the CI of each mean.
        alpha: 0.05 for 95% intervals.
        seed: bootstrap seed.
        tag: TensorBoard text tag.

    Returns:
        The summary written to ``summary.json``: ``{f"{metric}_{class}": {"mean", "std", "median", "ci_low",
        "ci_high", "n"}}``.

    Raises:
        KeyError: when a row lacks a column.
    """
    columns = _columns(class_names, metrics)
    for i, row in enumerate(rows):
        missing = [c for c in ("case_id", *columns) if c not in row]
        if missing:
            raise KeyError(f"row {i} ({row.get('case_id')!r}) lacks {missing}.")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", *columns])
        for row in rows:
            writer.writerow([row["case_id"], *(float(row[c]) for c in columns)])
    summary = summarize_columns(rows, columns, n_resamples=n_resamples, alpha=alpha, seed=seed)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(json_safe(summary), f, indent=2)
    table = markdown_table(summary, class_names, metrics)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(table + "\n")
    if tb_writer is not None:
        tb_writer.add_text(tag, table, step)
    return summary


def classification_markdown_table(report: Mapping[str, Any], digits: int = 3) -> str:
    """Markdown table of a classification report: one row per metric with value and ``[low, high]`` CI."""
    lines = ["| Metric | Value | CI |", "|---|---|---|"]
    for key, entry in report["metrics"].items():
        ci = f"[{_fmt(entry['ci_low'], digits)}, {_fmt(entry['ci_high'], digits)}]"
        lines.append(f"| {key} | {_fmt(entry['value'], digits)} | {ci} |")
    return "\n".join(lines)


def write_classification_report(
    y_true: Any,
    y_prob: Any,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    case_ids: Sequence[str] | None = None,
    tb_writer: Any = None,
    step: int = 0,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    threshold: float = 0.5,
    tag: str = "classification_metrics",
) -> dict[str, Any]:
    """Write ``predictions.csv``, ``summary.json`` and ``summary.md`` of a classification test set.

    Args:
        y_true: ``(N,)`` integer labels.
        y_prob: ``(N,)`` probabilities of class 1 or ``(N, K)`` class probabilities.
        out_dir: created if missing.
        class_names: one per class.
        case_ids: one per case; default ``case_0000``, ...
        tb_writer: TensorBoard ``SummaryWriter`` for the Markdown table (``add_text``).
        step: TensorBoard step.
        n_resamples, seed, alpha, threshold: see :func:`pipelines.metrics.classification_report`.
        tag: TensorBoard text tag.

    Returns:
        The :func:`~pipelines.metrics.classification_report` dict written to ``summary.json``.
    """
    report = classification_report(
        y_true, y_prob, class_names, n_resamples=n_resamples, seed=seed, alpha=alpha, threshold=threshold
    )
    y_true = np.asarray(y_true).reshape(-1)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if y_prob.ndim == 1 or y_prob.shape[-1] == 1:
        y_prob = y_prob.reshape(-1)
        y_prob = np.stack([1.0 - y_prob, y_prob], axis=1)
    y_pred = predict_labels(y_prob, threshold)
    if case_ids is None:
        case_ids = [f"case_{i:04d}" for i in range(len(y_true))]
    if len(case_ids) != len(y_true):
        raise ValueError(f"{len(case_ids)} case ids for {len(y_true)} cases.")
    os.makedirs(out_dir, exist_ok=True)
    names = report["class_names"]
    with open(os.path.join(out_dir, "predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case_id", "label", "prediction", *(f"prob_{n}" for n in names)])
        for cid, t, p, probs in zip(case_ids, y_true, y_pred, y_prob):
            writer.writerow([cid, names[int(t)], names[int(p)], *(float(v) for v in probs)])
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(json_safe(report), f, indent=2)
    table = classification_markdown_table(report)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(table + "\n")
    if tb_writer is not None:
        tb_writer.add_text(tag, table, step)
    return report
