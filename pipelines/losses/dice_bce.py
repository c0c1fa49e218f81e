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

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, C, *spatial)``.
            target: binary multi-label target of the same shape.

        Raises:
            ValueError: when the target is not shaped like the input (e.g. a label map ``(B, 1, ...)``).
        """
        if target.shape != input.shape:
            raise ValueError(
                f"DiceBCELoss needs multi-label targets shaped like the input, got target {tuple(target.shape)} "
                f"for input {tuple(input.shape)}."
            )
        return super().forward(input, target)

    def ce(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy over all channels and voxels (the hook MONAI's class uses softmax CE in)."""
        return self.bce(input, target)
