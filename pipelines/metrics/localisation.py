"""Localisation metrics of a predicted mask at a coarser grid than the image (LA-Net's ``m x m`` map): upsample
bilinearly to the image, threshold, Dice / IoU per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from ignite.metrics import Metric

__all__ = ['MaskDiceMetric', 'mask_dice_iou', 'upsample_mask']


def upsample_mask(mask_prob: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """LA-Net mask probabilities ``(B, 1, m, m)`` -> ``(B, 1, *size)``, bilinear (as the paper evaluates)."""
    return F.interpolate(mask_prob.float(), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)


def mask_dice_iou(mask_prob: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of the upsampled mask thresholded at ``threshold`` against ``gt`` ``(B, 1, H, W)``.

    Images whose prediction and ground truth are both empty score 1.
    """
    pred = upsample_mask(mask_prob, gt.shape[2:]) >= threshold
    truth = gt > 0.5
    inter = (pred & truth).flatten(1).sum(1).double()
    p, t = pred.flatten(1).sum(1).double(), truth.flatten(1).sum(1).double()
    union = p + t - inter
    empty = (p + t) == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (p + t).clamp_min(1))
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    return dice.cpu().numpy(), iou.cpu().numpy()


class MaskDiceMetric(Metric):
    """Mean Dice (or IoU) of the LA-Net mask, upsampled to the image size and thresholded, over the images
    that have a ground-truth mask (``has_mask = 1``); reads ``mask_prob``, ``mask``, ``has_mask`` of the output.

    Args:
        kind: ``"dice"`` or ``"iou"``.
        threshold: probability threshold.
    """

    required_output_keys = ("mask_prob", "mask", "has_mask")
    _skip_unrolling = True

    def __init__(self, kind: str = "dice", threshold: float = 0.5, output_transform=lambda x: x, device="cpu"):
        if kind not in ("dice", "iou"):
            raise ValueError(f"kind must be 'dice' or 'iou', got {kind!r}.")
        self.kind, self.threshold = kind, threshold
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._values: list[float] = []

    def update(self, output: Sequence) -> None:
        """``output``: ``(mask_prob (B, 1, m, m), gt mask (B, 1, H, W), has_mask (B,))``."""
        mask_prob, gt, has_mask = output
        if mask_prob is None:
            return
        flags = torch.as_tensor(has_mask).reshape(-1).bool().cpu()
        if not bool(flags.any()):
            return
        dice, iou = mask_dice_iou(mask_prob, gt, self.threshold)
        values = dice if self.kind == "dice" else iou
        self._values.extend(float(v) for v in values[flags.numpy()])

    def compute(self) -> float:
        return float(np.mean(self._values)) if self._values else float("nan")
