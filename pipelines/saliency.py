"""Saliency for the BUSI classifiers: Grad-CAM on the last backbone stage and an LA-Net overview figure.

Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017. A small implementation rather than :class:`monai.visualize.GradCAM`, which expects a
logits tensor (LA-Net returns a dict), leaves its hooks on the network, zeroes the parameter gradients and,
for a batch, mixes the scores of the samples' classes (``logits[:, class_idx]`` with a per-sample index). Here
the hook lives for one call, the score is each sample's own class and the gradient is taken with
:func:`torch.autograd.grad` (parameter ``.grad`` untouched).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.nets.lanet import split_outputs

__all__ = ["grad_cam", "save_lanet_figure"]


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    class_idx: int | Sequence[int] | torch.Tensor | None = None,
    target_layer: str = "backbone.layer4",
) -> torch.Tensor:
    """Grad-CAM maps of ``class_idx`` (default: each image's predicted class) on ``target_layer``.

    ``cam = ReLU(sum_k mean_xy(d score / d A_k) * A_k)``, upsampled bilinearly to the image size and scaled
    per image to [0, 1] (an all-zero map stays zero). The model runs in eval mode (restored afterwards).

    Args:
        model: :class:`~networks.nets.lanet.LANet`, :class:`~networks.nets.lanet.ResNetClassifier` or any
            network returning logits (or a dict / tuple with them).
        images: network inputs ``(B, C, H, W)``.
        class_idx: one class for all images, one per image, or None for the predicted classes.
        target_layer: module name in ``model.named_modules()``; ``"backbone.layer4"`` is the last stage of
            the LA-Net backbones.

    Returns:
        ``(B, 1, H, W)`` float32 in [0, 1].

    Raises:
        ValueError: ``target_layer`` is not a module of ``model``.
    """
    modules = dict(model.named_modules())
    if target_layer not in modules:
        candidates = [n for n in modules if n.endswith("layer4") or n.endswith("features")]
        raise ValueError(f"target_layer {target_layer!r} is not a module of {type(model).__name__}; e.g. {candidates}.")
    store: dict[str, torch.Tensor] = {}
    handle = modules[target_layer].register_forward_hook(lambda _m, _i, out: store.__setitem__("act", out))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            logits, _ = split_outputs(model(x))
            act = store["act"]
            if class_idx is None:
                idx = logits.argmax(dim=1)
            else:
                idx = torch.as_tensor(class_idx, device=logits.device).long().reshape(-1)
                idx = idx.expand(logits.shape[0]) if idx.numel() == 1 else idx
            score = logits.gather(1, idx[:, None]).sum()
            (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
        model.train(was_training)
    with torch.no_grad():
        spatial = tuple(range(2, act.ndim))
        weights = grad.mean(dim=spatial, keepdim=True)
        cam = F.relu((weights * act).sum(dim=1, keepdim=True)).float()
        cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)
        flat = cam.flatten(1)
        low, high = flat.min(dim=1).values, flat.max(dim=1).values
        scale = (high - low).clamp_min(1e-12)
        view = (-1,) + (1,) * (cam.ndim - 1)
        cam = torch.where((high > low).view(view), (cam - low.view(view)) / scale.view(view), torch.zeros_like(cam))
    return cam.clamp(0, 1)


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
