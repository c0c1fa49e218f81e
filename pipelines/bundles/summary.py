"""Where a bundle command's results went and what to run next: the last entry of every run id.

``training_summary`` names the best model, the TensorBoard command and the evaluation / inference commands of the run
folder (the configs :class:`pipelines.bundles.RunBundleWriter` wrote there, so no override is repeated);
``evaluation_summary`` names the report files; ``inference_summary`` names the prediction folder with the number of
files written and of inputs that failed (the ``status`` column of ``predictions.csv``, where the predictor writes one).
Each prints a few short lines to stdout and returns them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import ignite.distributed as idist

from .guards import run_started

__all__ = ["evaluation_summary", "inference_summary", "training_summary"]


def _emit(tag: str, lines: list[str]) -> list[str]:
    lines = [f"[{tag}] {line}" for line in lines]
    if idist.get_rank() == 0:  # under torchrun only rank 0 speaks (another rank may not see rank 0's files yet)
        print("\n".join(lines), flush=True)
    return lines


def training_summary(ckpt_dir: str, log_dir: str, run_dir: str, evaluator: Any = None) -> list[str]:
    """Print the best model, the TensorBoard command and the commands that evaluate / run the trained model.

    Args:
        ckpt_dir: the checkpoint folder (best model ``model.pt``, last states ``checkpoint_epoch=N.pt``).
        log_dir: the TensorBoard folder.
        run_dir: the run folder, whose ``configs/`` holds the run's own configs.
        evaluator: the validation engine; its ``state.best_metric`` / ``best_metric_epoch`` are shown.
    """
    best = Path(ckpt_dir) / "model.pt"
    lines = []
    score = ""
    state = getattr(evaluator, "state", None)
    if state is not None and getattr(state, "best_metric_epoch", -1) not in (-1, None):
        score = f" (best validation {float(state.best_metric):.4f} at epoch {state.best_metric_epoch})"
    lines.append(f"best model: {best}{score}" if best.is_file() else f"no best model yet in {ckpt_dir}")
    lines.append(f"TensorBoard: tensorboard --logdir {log_dir}")
    configs = Path(run_dir) / "configs"
    if (configs / "train.yaml").is_file() and (configs / "evaluate.yaml").is_file():
        lines.append(f"evaluate with: python -m monai.bundle run evaluating --config_file "
                     f"\"['{configs / 'train.yaml'}','{configs / 'evaluate.yaml'}']\"")
    if (configs / "inference.yaml").is_file():
        lines.append(f"infer with: python -m monai.bundle run inference --config_file {configs / 'inference.yaml'} "
                     f"--input_dir <folder>")
    return _emit("training", lines)


def evaluation_summary(eval_dir: str) -> list[str]:
    """Print the evaluation report (``summary.md``) and the other files the evaluation wrote in ``eval_dir``."""
    folder = Path(eval_dir)
    others = [name for name in ("summary.json", "metrics.csv", "predictions.csv", "localisation.csv",
                                "robustness.json", "figures") if (folder / name).exists()]
    lines = [f"report: {folder / 'summary.md'}"]
    if others:
        lines.append(f"also in {folder}: {', '.join(others)}")
    return _emit("evaluating", lines)


def inference_summary(pred_dir: str) -> list[str]:
    """Print the prediction folder with the number of inputs predicted and failed.

    With a ``predictions.csv`` that has a ``status`` column, rows with status ``error`` are the failures and the
    other rows the predictions; otherwise the predictions are the files written in ``pred_dir`` since the run's guard
    (:func:`pipelines.bundles.guard`) ran.
    """
    folder = Path(pred_dir)
    table = folder / "predictions.csv"
    failed = 0
    if table.is_file():
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        failed = sum(1 for row in rows if str(row.get("status", "")).lower() == "error")
        done = len(rows) - failed
    else:
        start = run_started() or 0.0
        done = sum(1 for p in folder.iterdir() if p.is_file() and os.path.getmtime(p) >= start - 1.0) \
            if folder.is_dir() else 0
    return _emit("inference", [f"predictions: {folder} ({done} files, {failed} failed)"])
