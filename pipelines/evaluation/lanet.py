"""LA-Net evaluation figures (``bundles/busi_lanet``): one overview per image (image with predicted / true contours,
mask probability, Grad-CAM), as a function and as an evaluator handler.

The rest of the LA-Net evaluation runs on MONAI's ``SupervisedEvaluator`` with the project's handlers (see
``bundles/busi_lanet/configs/evaluate.yaml``): :class:`~pipelines.metrics.ClassificationMetricsHandler` and
:class:`~pipelines.evaluation.MetricsReportHandler` (classification report with bootstrap CIs),
:class:`~pipelines.metrics.MaskLocalisationHandler` and :class:`~pipelines.evaluation.LocalisationReportHandler`
(mask Dice / IoU), :class:`~pipelines.evaluation.PGDRobustnessHandler` (PGD) and :class:`LANetFigureHandler`.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.utils import evenly_divisible_all_gather

from ..metrics.handlers import gather_strings
from .saliency import grad_cam

__all__ = ["EvaluationFigureHandler", "LANetFigureHandler", "save_lanet_figure"]


def _to_2d(array: Any, name: str, size: tuple[int, int] | None = None, mode: str = "bilinear") -> np.ndarray | None:
    """A float ``(H, W)`` array from ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` numpy/torch, resized to ``size``."""
    if array is None:
        return None
    tensor = torch.as_tensor(array.detach().cpu() if isinstance(array, torch.Tensor) else np.asarray(array)).float()
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be (H, W) or (1, H, W), got shape {tuple(np.shape(array))}.")
    if size is not None and tuple(tensor.shape) != tuple(size):
        kwargs = {} if mode == "nearest" else {"align_corners": False}
        tensor = F.interpolate(tensor[None, None], size=size, mode=mode, **kwargs)[0, 0]
    return tensor.numpy()


def _probs_and_title(probs: Any, class_names: Sequence[str], true_label: int | None) -> tuple[np.ndarray, str]:
    """Class probabilities as a float array and the figure title ``"predicted: <class> (<prob>)   true: <class>"``.

    Raises:
        ValueError: ``probs`` and ``class_names`` disagree in length.
    """
    probs = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=float).reshape(-1)
    if len(probs) != len(class_names):
        raise ValueError(f"probs has {len(probs)} entries but class_names {list(class_names)} has {len(class_names)}.")
    predicted = int(np.argmax(probs))
    title = f"predicted: {class_names[predicted]} ({probs[predicted]:.2f})"
    if true_label is not None:
        title += f"   true: {class_names[int(true_label)]}"
    return probs, title


def _display(img: np.ndarray) -> np.ndarray:
    """``img`` scaled to [0, 1] for display (all zero when constant)."""
    lo, hi = float(np.min(img)), float(np.max(img))
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def _figure(ncols: int, figsize: tuple[float, float], dpi: int) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` (Agg canvas, constrained layout) with ``ncols`` panels in one row, and its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _save_png(fig: Any, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path


def save_lanet_figure(
    path: str,
    image,
    gt_mask,
    pred_mask_prob,
    cam,
    class_names: Sequence[str],
    probs,
    true_label: int | None = None,
    threshold: float = 0.5,
    dpi: int = 100,
    return_figure: bool = False,
):
    """Write a PNG with three panels: the image with the predicted mask contour (red) and the ground-truth
    contour (green); the predicted mask probability with its colour bar; the Grad-CAM heatmap over the image. The title reads
    ``"predicted: <class> (<prob>)"`` (and the true class when given).

    Args:
        path: output PNG (folders are created).
        image: ``(H, W)`` or ``(1, H, W)`` in any range (scaled for display).
        gt_mask: ``(H, W)`` ground truth in {0, 1}, or None.
        pred_mask_prob: predicted mask probabilities at any size (``(m, m)`` from LA-Net), upsampled bilinearly
            to the image, contour at ``threshold``.
        cam: Grad-CAM ``(H, W)`` in [0, 1] (resized to the image if needed), or None.
        class_names: names indexed by class.
        probs: class probabilities ``(num_classes,)``.
        true_label: optional true class index.
        threshold: mask contour level.
        dpi: resolution (the figure is 12 x 4.4 inches).
        return_figure: return the matplotlib figure instead of writing ``path``.

    Returns:
        ``path`` (or the figure).

    Raises:
        ValueError: ``probs`` and ``class_names`` disagree in length, or an input of the wrong shape.
    """
    img = _to_2d(image, "image")
    size = img.shape
    gt = _to_2d(gt_mask, "gt_mask", size, mode="nearest")
    pred = _to_2d(pred_mask_prob, "pred_mask_prob", size)
    heat = _to_2d(cam, "cam", size)
    probs, title = _probs_and_title(probs, class_names, true_label)

    fig, axes = _figure(3, (12, 4.4), dpi)
    shown = _display(img)
    axes[0].imshow(shown, cmap="gray", vmin=0, vmax=1)
    if pred is not None and pred.max() >= threshold > pred.min():
        axes[0].contour(pred, levels=[threshold], colors="red", linewidths=1.5)
    if gt is not None and gt.max() > 0.5 > gt.min():
        axes[0].contour(gt, levels=[0.5], colors="lime", linewidths=1.5)
    axes[0].set_title("image: prediction (red), ground truth (green)", fontsize=9)
    # the probability panel always carries its colour bar (an all-zero panel when the network predicts no mask)
    prob = axes[1].imshow(pred if pred is not None else np.zeros_like(shown), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(prob, ax=axes[1], fraction=0.046, pad=0.04, label="P(lesion)")
    axes[1].set_title("predicted mask probability", fontsize=9)
    axes[2].imshow(shown, cmap="gray", vmin=0, vmax=1)
    if heat is not None:
        axes[2].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45)
    axes[2].set_title("Grad-CAM (last stage)", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    if return_figure:
        return fig
    return _save_png(fig, path)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "image"


def _default_case_ids(batch: Any) -> list[str]:
    return [str(c) for c in batch["case_id"]]


class EvaluationFigureHandler(abc.ABC):
    """Base of a handler that writes one figure per image an evaluator sees: ``<save_dir>/<case_id>.png``.

    Each iteration reads ``image`` of the evaluator output (``decollate=False``) and the case ids of
    ``engine.state.batch``; the per-image arrays of :meth:`batch_arrays` are gathered under DDP and only rank 0 writes
    (:meth:`save_figure`). Subclasses implement both methods.

    Args:
        save_dir: figure folder (created).
        class_names: names indexed by class.
        case_id_transform: ``engine.state.batch`` -> one id per image.
        dpi: figure resolution.
    """

    def __init__(
        self,
        save_dir: str,
        class_names: Sequence[str],
        case_id_transform: Callable[[Any], Sequence[str]] = _default_case_ids,
        dpi: int = 100,
    ) -> None:
        self.save_dir = save_dir
        self.class_names = tuple(class_names)
        self.case_id_transform = case_id_transform
        self.dpi = dpi
        self.written: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.written = []

    @abc.abstractmethod
    def batch_arrays(self, engine: Engine, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors of this batch to draw, first dimension the image (``image`` is the float input batch)."""

    @abc.abstractmethod
    def save_figure(self, path: str, arrays: dict[str, torch.Tensor], i: int) -> None:
        """Write the figure of image ``i`` of the (gathered, CPU) ``arrays`` to ``path``."""

    def __call__(self, engine: Engine) -> None:
        out = engine.state.output
        image = torch.as_tensor(out["image"]).float()
        n = image.shape[0]
        ids = [str(c) for c in self.case_id_transform(engine.state.batch)]
        if len(ids) != n:
            raise ValueError(f"{len(ids)} case ids for a batch of {n} images.")
        arrays = {k: v.detach() for k, v in self.batch_arrays(engine, image).items()}
        if idist.get_world_size() > 1:
            arrays = {k: evenly_divisible_all_gather(v.contiguous(), concat=True) for k, v in arrays.items()}
            ids = gather_strings(ids)
        if idist.get_rank() != 0:
            return
        arrays = {k: v.cpu() for k, v in arrays.items()}
        for i, cid in enumerate(ids):
            path = os.path.join(self.save_dir, f"{_safe_name(cid)}.png")
            self.save_figure(path, arrays, i)
            self.written.append(path)


class LANetFigureHandler(EvaluationFigureHandler):
    """Writes :func:`save_lanet_figure` for every image an evaluator sees: ``<save_dir>/<case_id>.png``.

    Reads ``image``, ``pred`` (class probabilities), ``label``, ``mask_prob``, ``mask`` and ``has_mask`` of the
    evaluator output (the LA-Net iterations of :mod:`pipelines.engines.lanet`, ``decollate=False``) and the case ids
    of ``engine.state.batch``; Grad-CAM of ``target_layer`` (:func:`~pipelines.evaluation.saliency.grad_cam`) is
    computed on every rank, the per-image arrays are gathered, and only rank 0 writes.

    Args:
        save_dir: figure folder (created).
        class_names: names indexed by class.
        target_layer: Grad-CAM layer; None draws no heatmap.
        threshold: mask contour level.
        case_id_transform: ``engine.state.batch`` -> one id per image (default: ``batch["case_id"]``).
        dpi: figure resolution.
    """

    def __init__(
        self,
        save_dir: str,
        class_names: Sequence[str],
        target_layer: str | None = "backbone.layer4",
        threshold: float = 0.5,
        case_id_transform: Callable[[Any], Sequence[str]] = _default_case_ids,
        dpi: int = 100,
    ) -> None:
        super().__init__(save_dir, class_names, case_id_transform, dpi)
        self.target_layer = target_layer
        self.threshold = float(threshold)

    def batch_arrays(self, engine: Engine, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = engine.state.output
        network = getattr(engine.network, "module", engine.network)
        cam = grad_cam(network, image, target_layer=self.target_layer) if self.target_layer else None
        mask_prob = out.get("mask_prob")
        arrays = {
            "image": image, "probs": torch.as_tensor(out["pred"]).float(),
            "label": torch.as_tensor(out["label"]).reshape(-1).float(),
            "mask": torch.as_tensor(out["mask"]).float(), "has_mask": torch.as_tensor(out["has_mask"]).reshape(-1).float(),
        }
        if mask_prob is not None:
            arrays["mask_prob"] = torch.as_tensor(mask_prob).float()
        if cam is not None:
            arrays["cam"] = torch.as_tensor(cam).float()
        return arrays

    def save_figure(self, path: str, arrays: dict[str, torch.Tensor], i: int) -> None:
        gt = arrays["mask"][i, 0] if arrays["has_mask"][i] > 0 else None
        save_lanet_figure(
            path, arrays["image"][i, 0], gt,
            arrays["mask_prob"][i, 0] if "mask_prob" in arrays else None,
            arrays["cam"][i, 0] if "cam" in arrays else None,
            self.class_names, arrays["probs"][i], true_label=int(arrays["label"][i]),
            threshold=self.threshold, dpi=self.dpi,
        )
