"""Folder prediction of the joint segmentation + classification network (``bundles/busi_joint_segcls``): class
probabilities, the lesion mask at the image's own size and a visualisation per image.

:class:`JointSegClsPredictor` is the shared :class:`~pipelines.predictors.FolderPredictor` with the bundle's
pre-processing (:func:`transforms.recipes.busi_joint_image_transforms`: resize to the training size, [-1, 1]) and two
hooks overridden: :meth:`~JointSegClsPredictor.handle_output` writes the mask, :meth:`~JointSegClsPredictor.save_figure`
the visualisation (image, mask overlay, probability bars).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.transforms import InvertibleTransform
from PIL import Image

from transforms import recipes

from .folder import FolderPredictor

__all__ = ["JointSegClsPredictor", "save_joint_segcls_figure"]


def _to_2d(x: Any) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().float() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (1, H, W) array, got shape {arr.shape}.")
    return arr


def save_joint_segcls_figure(
    path: str, image: Any, mask: Any, class_names: Sequence[str], probs: Any, dpi: int = 100
) -> str:
    """Write a PNG with three panels: the image, the image with the predicted lesion mask (red overlay and contour)
    and a bar chart of the class probabilities, titled with the predicted class.

    Args:
        path: output PNG (folders are created).
        image: ``(H, W)`` or ``(1, H, W)``, any range (scaled for display).
        mask: binary lesion mask of the same size, or None.
        class_names: names indexed by class.
        probs: class probabilities ``(num_classes,)``.
        dpi: resolution (the figure is 11 x 3.8 inches).

    Returns:
        ``path``.

    Raises:
        ValueError: ``probs`` and ``class_names`` disagree in length, or a mask of another size than the image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    img = _to_2d(image)
    probs = np.asarray(probs.detach().cpu() if isinstance(probs, torch.Tensor) else probs, dtype=float).reshape(-1)
    if len(probs) != len(class_names):
        raise ValueError(f"probs has {len(probs)} entries but class_names {list(class_names)} has {len(class_names)}.")
    binary = None if mask is None else _to_2d(mask) > 0.5
    if binary is not None and binary.shape != img.shape:
        raise ValueError(f"mask {binary.shape} and image {img.shape} differ in size.")
    lo, hi = float(img.min()), float(img.max())
    shown = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    predicted = int(np.argmax(probs))

    fig = Figure(figsize=(11, 3.8), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.2])
    for ax, title in zip(axes[:2], ("image", "predicted lesion mask")):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    if binary is not None and binary.any():
        overlay = np.zeros((*binary.shape, 4), dtype=np.float32)
        overlay[binary] = (1.0, 0.15, 0.15, 0.4)
        axes[1].imshow(overlay)
        axes[1].contour(binary.astype(float), levels=[0.5], colors="red", linewidths=1.0)
    colours = ["tab:red" if k == predicted else "tab:gray" for k in range(len(probs))]
    axes[2].barh(list(class_names), probs, color=colours)
    axes[2].set_xlim(0, 1)
    axes[2].invert_yaxis()
    for k, p in enumerate(probs):
        axes[2].text(min(p + 0.02, 0.85), k, f"{p:.2f}", va="center", fontsize=9)
    axes[2].set_title("class probabilities", fontsize=9)
    fig.suptitle(f"predicted: {class_names[predicted]} ({probs[predicted]:.2f})", fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path


class JointSegClsPredictor(FolderPredictor):
    """:class:`~pipelines.predictors.FolderPredictor` of the joint segmentation + classification network
    (``{"seg": (1, 1, S, S) mask logits, "logits": (1, K)}``).

    Writes ``<pred_dir>/predictions.csv`` (``file``, ``prob_<class>`` ..., ``prediction``, ``mask``,
    ``lesion_fraction``, ``status``, ``error``), ``<pred_dir>/<name>_mask.png`` (the sigmoid lesion probability mapped
    back to the image's own size by inverting the resize (MONAI's ``Invertd``, bilinear), thresholded at
    ``threshold``, 0/255 8-bit) and, with ``save_figures``, ``<pred_dir>/figures/<name>.png``
    (:func:`save_joint_segcls_figure`).

    Args:
        network: the bundle's network.
        class_names: names indexed by class (BUSI: normal, benign, malignant).
        image_size: network input size of the default ``preprocessing``.
        preprocessing: the image pre-processing; default :func:`transforms.recipes.busi_joint_image_transforms`.
        threshold: lesion probability threshold.
        save_figures: write the visualisations.
        kwargs: ``ckpt_path``, ``device``, ``image_key`` of :class:`~pipelines.predictors.FolderPredictor`.
    """

    mask_suffix = "_mask"

    def __init__(
        self,
        network: nn.Module,
        class_names: Sequence[str],
        image_size: int = 256,
        preprocessing: InvertibleTransform | None = None,
        threshold: float = 0.5,
        save_figures: bool = True,
        **kwargs: Any,
    ) -> None:
        image_key = kwargs.get("image_key", "image")
        if preprocessing is None:
            preprocessing = recipes.busi_joint_image_transforms(image_size, image_key)
        super().__init__(network, class_names, preprocessing=preprocessing, image_size=image_size,
                         save_figures=save_figures, target_layer=None, **kwargs)
        self.threshold = float(threshold)

    def handle_output(self, output: Any, data: dict[str, Any], name: str, pred_dir: str) -> dict[str, Any]:
        prob = self.to_original_frame(torch.sigmoid(output["seg"].float())[0], data)
        data["pred_mask"] = prob
        binary = (prob[0] >= self.threshold).numpy()
        file = f"{name}{self.mask_suffix}.png"
        Image.fromarray(binary.astype(np.uint8) * 255, mode="L").save(os.path.join(pred_dir, file))
        return {"mask": file, "lesion_fraction": round(float(binary.mean()), 6)}

    def save_figure(self, path: str, data: Mapping[str, Any], probs: torch.Tensor) -> None:
        """The image at its own size, the predicted mask over it and the class probabilities."""
        mask = data.get("pred_mask")
        binary = None if mask is None else (torch.as_tensor(mask)[0] >= self.threshold)
        save_joint_segcls_figure(path, data["original"], binary, self.class_names, probs)
