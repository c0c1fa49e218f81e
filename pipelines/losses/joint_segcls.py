"""Loss of the joint segmentation + classification network: mask Dice + focal, class-weighted cross-entropy.

After the BUSI thesis code "Dual_Aug_Net" (Nimalesh, Thesis_Phase_2)::

    loss = seg_weight * (soft Dice + sigmoid focal(alpha, gamma)) (mask)  +  cls_weight * weighted CE (class)

with ``seg_weight = 0.7``, ``cls_weight = 0.3``, ``alpha = 0.25``, ``gamma = 2`` and the CE class weights
``N / (K n_c)`` of the training split (:func:`class_weights`). Dice and focal are MONAI's
(:class:`~monai.losses.DiceLoss`, :class:`~monai.losses.FocalLoss`).

The mask term of a sample whose bottleneck features were mixed by the latent augmentor is computed against the
sample's own mask (see :mod:`networks.nets.joint_segcls`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss

from networks.blocks.latent_augment import class_counts

__all__ = ["JointSegClsLoss", "class_weights"]


def class_weights(labels: Sequence[int] | np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``w_c = N / (K n_c)`` of a split's labels (1 for every class when balanced).

    Example: labels ``[0, 1, 1, 1, 2, 2]`` (``N = 6``, ``K = 3``) give ``[2, 2/3, 1]``.

    Args:
        labels: class indices of the training split, in ``[0, num_classes)``.
        num_classes: number of classes ``K``.

    Returns:
        ``(K,)`` float32 weights.

    Raises:
        ValueError: a class has no sample (its weight would be infinite), a label out of range, or no labels.
    """
    counts = class_counts(labels, num_classes)
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        raise ValueError(f"class_weights: classes {empty} have no sample among the {counts.sum()} labels.")
    return torch.as_tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


class JointSegClsLoss(nn.Module):
    """``seg_weight * (Dice + focal)(seg, mask) + cls_weight * CE(logits, label; class_weight)``.

    - mask: sigmoid soft Dice (MONAI ``DiceLoss(sigmoid=True, batch=dice_batch)``) + sigmoid focal loss (MONAI
      ``FocalLoss(alpha, gamma)``, mean over pixels), on mask logits ``(B, C, *spatial)`` against a binary mask of
      the same shape. ``dice_batch=True`` (default) sums Dice over the batch, so images with an empty mask (BUSI's
      normal class) do not each cost a Dice of 1; ``False`` averages per-image Dice;
    - deep supervision: when the outputs hold ``"seg_deep"`` ``(B, S, C, *spatial)``, the mask term is the mean of
      the mask terms of ``"seg"`` and the ``S`` deep heads;
    - class: cross-entropy with ``class_weight`` (PyTorch's weighted mean).

    Computed in float32 (also under autocast).

    Args:
        class_weight: ``(K,)`` CE weights, e.g. :func:`class_weights` of the training labels; None: unweighted.
        seg_weight: weight of the mask term. Defaults to 0.7.
        cls_weight: weight of the class term. Defaults to 0.3.
        focal_alpha: focal-loss alpha (weight of the foreground pixels; background ``1 - alpha``); None: no alpha.
            Defaults to 0.25.
        focal_gamma: focal-loss gamma. Defaults to 2.
        dice_batch: Dice over the whole batch (True) or per image (False). Defaults to True.

    Raises:
        ValueError: a negative term weight, or ``class_weight`` not one-dimensional.
    """

    def __init__(
        self,
        class_weight: Sequence[float] | torch.Tensor | None = None,
        seg_weight: float = 0.7,
        cls_weight: float = 0.3,
        focal_alpha: float | None = 0.25,
        focal_gamma: float = 2.0,
        dice_batch: bool = True,
    ) -> None:
        super().__init__()
        if seg_weight < 0 or cls_weight < 0:
            raise ValueError(f"term weights must be >= 0, got seg_weight={seg_weight}, cls_weight={cls_weight}.")
        self.seg_weight = float(seg_weight)
        self.cls_weight = float(cls_weight)
        self.dice = DiceLoss(sigmoid=True, batch=dice_batch)
        self.focal = FocalLoss(gamma=focal_gamma, alpha=focal_alpha, use_softmax=False)
        weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        if weight is not None and weight.ndim != 1:
            raise ValueError(f"class_weight must be one-dimensional (K,), got shape {tuple(weight.shape)}.")
        self.register_buffer("class_weight", weight)

    def mask_loss(self, seg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``Dice + focal`` of mask logits ``seg`` against the binary ``mask`` (same shape), float32."""
        if seg.shape != mask.shape:
            raise ValueError(f"mask {tuple(mask.shape)} does not match the mask logits {tuple(seg.shape)}.")
        seg, mask = seg.float(), mask.float()
        return self.dice(seg, mask) + self.focal(seg, mask)

    def terms(
        self, outputs: Mapping[str, torch.Tensor], mask: torch.Tensor, label: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss and its parts (for logging).

        Args:
            outputs: the network's output ``{"seg", "logits"[, "seg_deep"]}``.
            mask: binary masks ``(B, C, *spatial)`` shaped like ``outputs["seg"]``.
            label: class indices ``(B,)`` (or ``(B, 1)``).

        Returns:
            ``{"loss", "mask", "ce"}`` scalars: the total, the (deep-supervision averaged) mask term and the CE.

        Raises:
            ValueError: shapes that do not fit.
        """
        with torch.autocast(device_type=outputs["seg"].device.type, enabled=False):
            seg = outputs["seg"]
            mask = mask.to(seg.device)
            mask_terms = [self.mask_loss(seg, mask)]
            if "seg_deep" in outputs:
                deep = outputs["seg_deep"]
                for s in range(deep.shape[1]):
                    mask_terms.append(self.mask_loss(deep[:, s], mask))
            mask_term = torch.stack(mask_terms).mean()
            logits = outputs["logits"].float()
            label = torch.as_tensor(label, device=logits.device).reshape(-1).long()
            if label.numel() != logits.shape[0]:
                raise ValueError(f"{label.numel()} class labels for {logits.shape[0]} logits rows.")
            weight = None if self.class_weight is None else self.class_weight.to(logits.device)
            ce = F.cross_entropy(logits, label, weight=weight)
            total = self.seg_weight * mask_term + self.cls_weight * ce
        return {"loss": total, "mask": mask_term, "ce": ce}

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        target: torch.Tensor | Mapping[str, torch.Tensor],
        label: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            outputs: the network's output ``{"seg", "logits"[, "seg_deep"]}``.
            target: the masks ``(B, C, *spatial)``, or a mapping with ``"mask"`` and ``"label"`` (what a MONAI
                ``SupervisedTrainer`` passes as its single target when ``prepare_batch`` returns both).
            label: class indices ``(B,)`` when ``target`` is the mask tensor.

        Returns:
            the scalar loss.

        Raises:
            ValueError: the class labels are missing, or shapes do not fit.
        """
        if isinstance(target, Mapping):
            mask, label = target["mask"], target.get("label", label)
        else:
            mask = target
        if label is None:
            raise ValueError("JointSegClsLoss needs the class labels (label=..., or target['label']).")
        return self.terms(outputs, mask, label)["loss"]
