"""LA-Net losses: stage-1 mask pre-training and stage-2 joint classification + localisation with pseudo labels.

Fan et al., "Joint localization and classification of breast masses on ultrasound images using an auxiliary
attention-based framework", Medical Image Analysis 90 (2023) 102960.

Both losses take the mask ``M`` as probabilities ``(B, 1, m, m)`` (the ``"mask"`` output of
:class:`networks.nets.lanet.LANet`) and the full-resolution ground truth ``(B, 1, H, W)`` in {0, 1}, which is
bilinearly downsampled to ``m x m``. ``has_mask`` ``(B,)`` marks the images whose ground truth is real.
The BCE is computed in float32 outside autocast (it is unsafe in half precision).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LANetJointLoss", "LANetMaskLoss", "PSEUDO_MODES", "downsample_mask"]

#: ``"class_confidence"`` (the paper, default) or ``"mask_probability"`` (the original code).
PSEUDO_MODES = ("class_confidence", "mask_probability")


def downsample_mask(gt_mask: torch.Tensor, size: Sequence[int], antialias: bool = False) -> torch.Tensor:
    """Bilinear resize of ``gt_mask`` ``(B, 1, H, W)`` to ``size`` (a soft target in [0, 1]), float32.

    Args:
        gt_mask: ground-truth masks.
        size: target spatial size (the mask map size).
        antialias: average over the covered pixels when downsampling (plain bilinear, as in the LA-Net code,
            when False).
    """
    gt = gt_mask.float()
    if tuple(gt.shape[2:]) == tuple(size):
        return gt
    return F.interpolate(gt, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)


def _flags(has_mask: torch.Tensor | Sequence[int] | None, batch: int, device: torch.device) -> torch.Tensor:
    if has_mask is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    flags = torch.as_tensor(has_mask, device=device).reshape(-1).bool()
    if flags.numel() != batch:
        raise ValueError(f"has_mask has {flags.numel()} entries for a batch of {batch}.")
    return flags


def _check_mask(mask: torch.Tensor, gt_mask: torch.Tensor) -> None:
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected the predicted mask (B, 1, m, m), got shape {tuple(mask.shape)}.")
    if gt_mask.ndim != 4 or gt_mask.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"expected the ground truth (B, 1, H, W) for the mask {tuple(mask.shape)}, got {tuple(gt_mask.shape)}."
        )


class LANetMaskLoss(nn.Module):
    """Stage 1: ``BCE(M, downsample(GT))`` averaged over the pixels of the annotated images only.

    Images with ``has_mask = 0`` are ignored; a batch without any annotated image gives a zero loss that is
    still connected to the graph (so ``backward`` works).

    Args:
        antialias: see :func:`downsample_mask`.
    """

    def __init__(self, antialias: bool = False) -> None:
        super().__init__()
        self.antialias = antialias

    def forward(
        self, mask: torch.Tensor, gt_mask: torch.Tensor, has_mask: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """
        Args:
            mask: predicted mask probabilities ``(B, 1, m, m)``.
            gt_mask: ground truth ``(B, 1, H, W)`` in {0, 1}.
            has_mask: ``(B,)`` 0/1 flags (None: all annotated).

        Returns:
            the scalar loss.
        """
        _check_mask(mask, gt_mask)
        flags = _flags(has_mask, mask.shape[0], mask.device)
        with torch.autocast(device_type=mask.device.type, enabled=False):
            prob = mask.float()
            if not bool(flags.any()):
                return prob.sum() * 0.0
            target = downsample_mask(gt_mask.to(mask.device), prob.shape[2:], self.antialias)
            return F.binary_cross_entropy(prob[flags], target[flags])


class LANetJointLoss(nn.Module):
    """Stage 2: ``CE(logits, y) + mask_weight * mean(BCE_elementwise(M, T) * w)``.

    The mean runs over all ``B * m * m`` mask elements of the batch. Per image:

    * annotated (``has_mask = 1``): ``T`` = the bilinearly downsampled ground truth, ``w = 1``;
    * unannotated, ``pseudo_mode="class_confidence"`` (the paper, default): let ``p = softmax(logits)`` and
      ``c = argmax p``; if ``p[c] >= class_conf`` (and, with ``require_correct``, ``c == y``) the image gets the
      pseudo label ``T = 1[M >= pseudo_conf]`` with ``w = pseudo_mask_weight``, otherwise ``w = 0``;
    * unannotated, ``pseudo_mode="mask_probability"`` (the original code): every unannotated image gets
      ``T = 1[M >= pseudo_conf]`` and ``w = pseudo_mask_weight`` (the gate is the mask probability alone).

    ``T`` and the gate are detached; the gradient of the pseudo-label term flows through ``M`` only.

    Args:
        mask_weight: weight of the mask term.
        pseudo_conf: mask probability threshold of the pseudo label.
        pseudo_mask_weight: element weight ``w`` of the pseudo-labelled images.
        pseudo_mode: one of :data:`PSEUDO_MODES`.
        class_conf: class-probability threshold of ``"class_confidence"``.
        require_correct: with ``"class_confidence"``, also require the predicted class to be the label.
        class_weight: optional CE class weights ``(num_classes,)``.
        antialias: see :func:`downsample_mask`.

    Raises:
        ValueError: unknown ``pseudo_mode`` or a threshold outside [0, 1].
    """

    def __init__(
        self,
        mask_weight: float = 1.0,
        pseudo_conf: float = 0.8,
        pseudo_mask_weight: float = 0.1,
        pseudo_mode: str = "class_confidence",
        class_conf: float = 0.8,
        require_correct: bool = False,
        class_weight: Sequence[float] | torch.Tensor | None = None,
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if pseudo_mode not in PSEUDO_MODES:
            raise ValueError(f"pseudo_mode must be one of {PSEUDO_MODES}, got {pseudo_mode!r}.")
        for name, value in (("pseudo_conf", pseudo_conf), ("class_conf", class_conf)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        self.mask_weight, self.pseudo_conf, self.pseudo_mask_weight = mask_weight, pseudo_conf, pseudo_mask_weight
        self.pseudo_mode, self.class_conf, self.require_correct = pseudo_mode, class_conf, require_correct
        self.antialias = antialias
        self.register_buffer(
            "class_weight", None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        )

    def pseudo_gate(self, logits: torch.Tensor, labels: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the unannotated images that get a pseudo label."""
        unannotated = ~flags
        if self.pseudo_mode == "mask_probability":
            return unannotated
        with torch.no_grad():
            prob = torch.softmax(logits.float(), dim=1)
            conf, pred = prob.max(dim=1)
            gate = unannotated & (conf >= self.class_conf)
            if self.require_correct:
                gate = gate & (pred == labels)
        return gate

    def compute(
        self,
        logits: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        gt_mask: torch.Tensor,
        has_mask: torch.Tensor | Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The loss and its parts.

        Args:
            logits: ``(B, num_classes)``.
            mask: predicted mask probabilities ``(B, 1, m, m)``.
            labels: class indices ``(B,)`` (or ``(B, 1)``).
            gt_mask: ground truth ``(B, 1, H, W)``; its value is ignored for unannotated images.
            has_mask: ``(B,)`` 0/1 flags (None: all annotated).

        Returns:
            ``{"loss", "ce", "mask_loss", "pseudo_fraction"}`` (``pseudo_fraction``: share of the batch that got
            a pseudo label, detached).
        """
        _check_mask(mask, gt_mask)
        labels = torch.as_tensor(labels, device=logits.device).reshape(-1).long()
        flags = _flags(has_mask, mask.shape[0], mask.device)
        ce = F.cross_entropy(logits.float(), labels, weight=self.class_weight)
        gate = self.pseudo_gate(logits, labels, flags)
        with torch.autocast(device_type=mask.device.type, enabled=False):
            prob = mask.float()
            gt = downsample_mask(gt_mask.to(mask.device), prob.shape[2:], self.antialias)
            pseudo = (prob.detach() >= self.pseudo_conf).float()
            view = (-1,) + (1,) * (prob.ndim - 1)
            target = torch.where(flags.view(view), gt, pseudo)
            weight = flags.float() + gate.float() * self.pseudo_mask_weight
            element = F.binary_cross_entropy(prob, target, reduction="none")
            mask_loss = (element * weight.view(view)).mean()
        return {
            "loss": ce + self.mask_weight * mask_loss,
            "ce": ce,
            "mask_loss": mask_loss,
            "pseudo_fraction": gate.float().mean().detach(),
        }

    def forward(
        self,
        logits: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor,
        gt_mask: torch.Tensor,
        has_mask: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """The scalar loss; arguments as :meth:`compute`."""
        return self.compute(logits, mask, labels, gt_mask, has_mask)["loss"]
