"""Folder prediction of a 2D binary segmentation network (e.g. the lung UNet of ``cxr_lung_segmentation``): every
PNG / JPEG / DICOM image of a folder -> ``<name>_mask.png`` (0/255) in the image's own grid.

:class:`SegmentationFolderPredictor` is :class:`~pipelines.predictors.folder.FolderPredictor` with the hooks of a
mask-only network: no class probabilities, and :meth:`~SegmentationFolderPredictor.handle_output` writes the mask.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.transforms import InvertibleTransform
from PIL import Image

from .folder import FolderPredictor

__all__ = ["SegmentationFolderPredictor", "foreground_probability"]


def foreground_probability(output: Any) -> torch.Tensor:
    """The foreground probability of a binary segmentation network's logits.

    Args:
        output: logits ``(B, C, *spatial)`` (or a ``{"pred": logits}`` dict, or a tuple whose first entry is the
            logits): one channel -> sigmoid; several -> softmax, foreground = every channel but channel 0
            (background).

    Returns:
        ``(B, 1, *spatial)`` float probabilities.

    Raises:
        ValueError: the logits have no channel axis.
    """
    if isinstance(output, Mapping):
        output = output["pred"]
    elif isinstance(output, (tuple, list)):
        output = output[0]
    logits = torch.as_tensor(output).float()
    if logits.ndim < 3:
        raise ValueError(f"expected segmentation logits (B, C, *spatial), got shape {tuple(logits.shape)}.")
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return 1.0 - torch.softmax(logits, dim=1)[:, :1]


class SegmentationFolderPredictor(FolderPredictor):
    """Segment every image of a folder with a trained binary 2D segmentation network.

    For each image: the bundle's evaluation pre-processing of the image (e.g.
    :func:`transforms.recipes.cxr_lung_image_transforms`, which resizes it to the network's size), the network, the
    foreground probability (:func:`foreground_probability`), mapped back to the image's own grid by inverting the
    pre-processing (MONAI's ``Invertd``, bilinear), thresholded at ``threshold`` and written as
    ``<pred_dir>/<name>_mask.png`` (8-bit, 0/255, the size of the input image). ``predictions.csv`` lists every file
    with its ``mask`` file name and ``foreground_fraction`` (share of mask pixels), ``status`` and ``error``
    (unreadable files are skipped, see :class:`~pipelines.predictors.folder.FolderPredictor`).

    Args:
        network: the bundle's network, logits ``(1, C, h, w)`` (``C`` = 1 sigmoid, or background + foreground).
        preprocessing: the bundle's invertible image pre-processing (keeps the meta data).
        threshold: foreground probability threshold.
        ckpt_path: checkpoint to load once (None keeps the network's weights).
        device: where the network runs.
        image_key: key of the image in the data dictionary.
    """

    mask_suffix = "_mask"

    def __init__(
        self,
        network: nn.Module,
        preprocessing: InvertibleTransform,
        threshold: float = 0.5,
        ckpt_path: str | None = None,
        device: torch.device | str = "cpu",
        image_key: str = "image",
    ) -> None:
        super().__init__(
            network, class_names=(), preprocessing=preprocessing, ckpt_path=ckpt_path, device=device,
            save_figures=False, target_layer=None, image_key=image_key,
        )
        self.threshold = float(threshold)

    def class_probabilities(self, output: Any) -> None:
        """A segmenter has no class output."""
        return None

    def probability_map(self, output: Any, data: Mapping[str, Any]) -> torch.Tensor:
        """The foreground probability ``(1, H, W)`` in the original image grid."""
        return self.to_original_frame(foreground_probability(output)[0], data)

    def handle_output(self, output: Any, data: dict[str, Any], name: str, pred_dir: str) -> dict[str, Any]:
        prob = self.probability_map(output, data)
        data["pred_mask"] = prob
        binary = (prob[0] >= self.threshold).numpy()
        file = f"{name}{self.mask_suffix}.png"
        Image.fromarray(binary.astype(np.uint8) * 255, mode="L").save(os.path.join(pred_dir, file))
        return {"mask": file, "foreground_fraction": round(float(binary.mean()), 6)}
