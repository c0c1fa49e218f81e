"""LA-Net evaluation (``bundles/busi_lanet``): classification report with CIs, localisation of the mask, PGD
robustness, and one overview figure per image (image with predicted / true contours, mask probability, Grad-CAM)."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.nets.lanet import split_outputs

from ..engines.lanet import batch_to_device
from ..handlers.checkpoints import load_weights
from ..metrics.classification import classification_report
from ..metrics.localisation import mask_dice_iou
from .reports import (
    classification_markdown_table,
    json_safe,
    write_classification_report,
)
from .robustness import pgd_attack, to_minus_one_one
from .saliency import grad_cam

__all__ = ['evaluate_lanet', 'save_lanet_figure']


def _to_2d(array, name: str, size: tuple[int, int] | None = None, mode: str = "bilinear") -> np.ndarray | None:
    """A (H, W) float array from (H, W), (1, H, W) or (1, 1, H, W) numpy/torch, resized to ``size``."""
    if array is None:
        return None
    tensor = torch.as_tensor(array.detach().cpu() if isinstance(array, torch.Tensor) else np.asarray(array)).float()
    while tensor.ndim > 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be (H, W) or (1, H, W), got shape {tuple(np.shape(array))}.")
    if size is not None and tuple(tensor.shape) != tuple(size):
        tensor = F.interpolate(tensor[None, None], size=size, mode=mode, align_corners=False)[0, 0]
    return tensor.numpy()


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
) -> str:
    """Write a PNG with three panels: the image with the predicted mask contour (red) and the ground-truth
    contour (green); the predicted mask probability; the Grad-CAM heatmap over the image. The title reads
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

    Returns:
        ``path``.

    Raises:
        ValueError: ``probs`` and ``class_names`` disagree in length, or an input of the wrong shape.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    img = _to_2d(image, "image")
    size = img.shape
    gt = _to_2d(gt_mask, "gt_mask", size, mode="nearest")
    pred = _to_2d(pred_mask_prob, "pred_mask_prob", size)
    heat = _to_2d(cam, "cam", size)
    probs = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=float).reshape(-1)
    if len(probs) != len(class_names):
        raise ValueError(f"probs has {len(probs)} entries but class_names {list(class_names)} has {len(class_names)}.")
    predicted = int(np.argmax(probs))
    title = f"predicted: {class_names[predicted]} ({probs[predicted]:.2f})"
    if true_label is not None:
        title += f"   true: {class_names[int(true_label)]}"

    fig = Figure(figsize=(12, 4.4), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    lo, hi = float(np.min(img)), float(np.max(img))
    shown = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    axes[0].imshow(shown, cmap="gray", vmin=0, vmax=1)
    if pred is not None and pred.max() >= threshold > pred.min():
        axes[0].contour(pred, levels=[threshold], colors="red", linewidths=1.5)
    if gt is not None and gt.max() > 0.5 > gt.min():
        axes[0].contour(gt, levels=[0.5], colors="lime", linewidths=1.5)
    axes[0].set_title("image: prediction (red), ground truth (green)", fontsize=9)
    if pred is not None:
        axes[1].imshow(pred, cmap="viridis", vmin=0, vmax=1)
    axes[1].set_title("predicted mask probability", fontsize=9)
    axes[2].imshow(shown, cmap="gray", vmin=0, vmax=1)
    if heat is not None:
        axes[2].imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=0.45)
    axes[2].set_title("Grad-CAM (last stage)", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "image"


def _markdown(report: Mapping, robust: Mapping, localisation: Mapping) -> str:
    lines = ["## Classification", "", classification_markdown_table(report), "", "## Localisation", "",
             "| Metric | Value | n |", "|---|---|---|"]
    for key in ("iou", "dice"):
        lines.append(f"| {key} | {localisation[key]:.3f} | {localisation['n']} |")
    lines += ["", f"## PGD robustness (eps {robust['eps']:.4f}, step {robust['step']:.4f}, {robust['steps']} steps)",
              "", "| Metric | clean | PGD |", "|---|---|---|"]
    for key in ("accuracy", "auc"):
        lines.append(f"| {key} | {robust['clean'][key]:.3f} | {robust['pgd'][key]:.3f} |")
    return "\n".join(lines) + "\n"


def evaluate_lanet(
    network: nn.Module,
    dataloader,
    out_dir: str,
    class_names: Sequence[str],
    ckpt_path: str | None = None,
    device: torch.device | str = "cpu",
    pgd_eps: float = 8 / 255,
    pgd_step: float = 2 / 255,
    pgd_steps: int = 4,
    pgd_random_start: bool = True,
    figures: bool = True,
    target_layer: str = "backbone.layer4",
    n_resamples: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
    log_dir: str | None = None,
) -> dict[str, Any]:
    """Evaluate a trained LA-Net (or classifier) on a BUSI test set.

    Writes to ``out_dir``: ``predictions.csv``, ``summary.json`` and ``summary.md`` of
    :func:`~pipelines.evaluation.reports.write_classification_report` (accuracy, AUC, sensitivity, specificity, F1, ... with
    bootstrap CIs; ``summary.json`` also gets ``localisation`` and ``robustness``, ``summary.md`` the tables below),
    ``localisation.csv`` (per image with a mask: IoU and Dice of the mask upsampled bilinearly to the image and
    thresholded at ``threshold``), ``robustness.json`` (accuracy and AUC clean and under PGD in the [0, 1] image
    space: ``x01 = (x + 1) / 2``, the network sees ``x01 * 2 - 1``) and ``figures/<case>.png``
    (:func:`~pipelines.evaluation.save_lanet_figure`).

    Args:
        network: the network (on ``device``).
        dataloader: batches of :func:`transforms.recipes.busi_eval_transforms` items.
        out_dir: output folder (created).
        class_names: indexed by label.
        ckpt_path: weights to load first (None: use the network as it is).
        device: where to run.
        pgd_eps, pgd_step, pgd_steps, pgd_random_start: the attack (see :func:`pipelines.evaluation.robustness.pgd_attack`).
        figures: write one figure per image.
        target_layer: Grad-CAM layer.
        n_resamples, seed, threshold: bootstrap resamples, seed and decision threshold of the report.
        log_dir: optional TensorBoard folder for the Markdown summary.

    Returns:
        ``{"report", "localisation", "robustness", "markdown"}``.
    """
    device = torch.device(device)
    if ckpt_path is not None:
        load_weights(network, ckpt_path, required=True)
    network.eval()
    os.makedirs(out_dir, exist_ok=True)
    y_true, probs, adv_probs, case_ids, loc_rows = [], [], [], [], []
    batch_index = 0
    for batch in dataloader:
        data = batch_to_device(batch, device)
        ids = [str(c) for c in batch.get("case_id", [f"case_{len(case_ids) + i:04d}" for i in range(len(data["label"]))])]
        with torch.no_grad():
            logits, mask = split_outputs(network(data["image"]))
        p = torch.softmax(logits.float(), dim=1)
        x01 = ((data["image"] + 1.0) / 2.0).clamp(0, 1)
        adv = pgd_attack(network, x01, data["label"], eps=pgd_eps, step=pgd_step, steps=pgd_steps,
                         random_start=pgd_random_start, normalize=to_minus_one_one, seed=seed + batch_index)
        with torch.no_grad():
            adv_logits, _ = split_outputs(network(to_minus_one_one(adv)))
        y_true.append(data["label"].cpu())
        probs.append(p.cpu())
        adv_probs.append(torch.softmax(adv_logits.float(), dim=1).cpu())
        case_ids += ids
        if mask is not None:
            dice, iou = mask_dice_iou(mask, data["mask"], threshold)
            for i, flag in enumerate(data["has_mask"].cpu().tolist()):
                if flag:
                    loc_rows.append({"case_id": ids[i], "iou": float(iou[i]), "dice": float(dice[i])})
        if figures:
            cam = grad_cam(network, data["image"], target_layer=target_layer) if target_layer else None
            for i, cid in enumerate(ids):
                gt = data["mask"][i, 0] if int(data["has_mask"][i]) else None
                save_lanet_figure(
                    os.path.join(out_dir, "figures", f"{_safe_name(cid)}.png"), data["image"][i, 0], gt,
                    None if mask is None else mask[i, 0], None if cam is None else cam[i, 0], class_names, p[i],
                    true_label=int(data["label"][i]),
                )
        batch_index += 1
    y_true_np = torch.cat(y_true).numpy()
    probs_np, adv_np = torch.cat(probs).double().numpy(), torch.cat(adv_probs).double().numpy()

    writer = None
    if log_dir:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=log_dir)
    report = write_classification_report(y_true_np, probs_np, out_dir, class_names, case_ids=case_ids,
                                         n_resamples=n_resamples, seed=seed, threshold=threshold)
    adv_report = classification_report(y_true_np, adv_np, class_names, n_resamples=0, threshold=threshold)
    robust = {
        "eps": float(pgd_eps), "step": float(pgd_step), "steps": int(pgd_steps), "random_start": bool(pgd_random_start),
        "space": "[0, 1] image before normalisation to [-1, 1]",
        "n": int(len(y_true_np)),
        "clean": {k: float(report["metrics"][k]["value"]) for k in ("accuracy", "auc")},
        "pgd": {k: float(adv_report["metrics"][k]["value"]) for k in ("accuracy", "auc")},
    }
    localisation = {
        "n": len(loc_rows), "threshold": threshold,
        "iou": float(np.mean([r["iou"] for r in loc_rows])) if loc_rows else float("nan"),
        "dice": float(np.mean([r["dice"] for r in loc_rows])) if loc_rows else float("nan"),
    }
    with open(os.path.join(out_dir, "robustness.json"), "w") as f:
        json.dump(json_safe(robust), f, indent=2)
    with open(os.path.join(out_dir, "localisation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case_id", "iou", "dice"])
        w.writeheader()
        w.writerows(loc_rows)
    summary = dict(report, localisation=localisation, robustness=robust)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(json_safe(summary), f, indent=2)
    markdown = _markdown(report, robust, localisation)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(markdown)
    if writer is not None:
        writer.add_text("evaluation", markdown, 0)
        writer.close()
    print(markdown)
    return {"report": report, "localisation": localisation, "robustness": robust, "markdown": markdown}
