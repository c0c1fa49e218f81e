"""Losses that MONAI lacks in the exact form the methods need."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss

__all__ = ["DiceBCELoss"]


class DiceBCELoss(DiceCELoss):
    """Soft Dice + binary cross-entropy for multi-label (sigmoid) segmentation, e.g. the BraTS regions TC/WT/ET.

    MONAI's :class:`~monai.losses.DiceCELoss` uses binary cross-entropy only for single-channel outputs and a softmax
    cross-entropy across channels otherwise, which is wrong for overlapping regions. This subclass overrides the one
    hook (:meth:`ce`) so that every channel gets its own ``BCEWithLogits`` term; everything else (Dice options,
    ``lambda_dice``, ``lambda_ce``, ``weight`` as ``pos_weight``) is MONAI's.

    Args:
        **kwargs: passed to :class:`~monai.losses.DiceCELoss`; ``sigmoid=True`` is set unless given.
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("sigmoid", True)
        if kwargs.get("softmax", False):
            raise ValueError("DiceBCELoss is for sigmoid outputs; got softmax=True (use monai.losses.DiceCELoss).")
        super().__init__(**kwargs)

    def ce(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy over all channels and voxels; ``input`` are logits ``(B, C, *spatial)``."""
        if target.shape != input.shape:
            raise ValueError(f"DiceBCELoss needs one-hot/multi-label targets shaped like the input, got target "
                             f"{tuple(target.shape)} for input {tuple(input.shape)}.")
        return self.bce(input, target)
