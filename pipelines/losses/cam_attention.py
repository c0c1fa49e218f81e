"""Differentiable Grad-CAM attention loss (Wu, Japkowicz, Gilbert, Corizzo, Data Mining and Knowledge Discovery
40(4):47, 2026).

The paper trains chest X-ray classifiers with ``loss = lambda * CE + (1 - lambda) * L_att`` where ``L_att`` is one
minus the fraction of the class region (a part of the lung box: bottom half for Effusion, top half for
Pneumothorax, ...) in which the Grad-CAM of the target class exceeds a threshold; ``L_att = 0`` for No Finding.
The original computes ``L_att`` in numpy, so it carries no gradient and only the CE term trains. Here:

* :func:`grad_cam_maps` computes the Grad-CAM of the target class from the last feature stage with
  ``torch.autograd.grad(..., create_graph=True)``, so the maps are differentiable in the network weights;
* :class:`GradCAMAttentionLoss` replaces the step ``1[cam > t]`` by ``sigmoid((cam - t) / tau)`` (``mode="soft"``,
  the gradient reaches the backbone) or keeps the step (``mode="hard"``, no gradient, as the original);
* :func:`attention_lambda` is the weight of the CE term: the paper's adaptive schedule or a fixed value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ATTENTION_MODES", "GradCAMAttentionLoss", "attention_lambda", "grad_cam_maps"]

#: ``mode`` values of :class:`GradCAMAttentionLoss`.
ATTENTION_MODES = ("soft", "hard")
_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def grad_cam_maps(
    features: torch.Tensor,
    logits: torch.Tensor,
    target: torch.Tensor,
    create_graph: bool = True,
    normalise: bool = True,
    size: Sequence[int] | None = None,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Grad-CAM of the target class of each image (Selvaraju et al., ICCV 2017).

    ``alpha_c = mean over space of d logit_target / d A_c``, ``cam = ReLU(sum_c alpha_c A_c)``, optionally divided
    by its per-image maximum plus ``eps`` (values in ``[0, 1]``; an all-zero map stays zero), then optionally
    resized (bilinear, ``align_corners=False``) to ``size``.

    The gradient of the summed target logits is taken with respect to ``features`` only, so its backward pass runs
    through the classifier head (pooling + linear), not the backbone; this is exact when the head treats every image
    separately (true for :class:`~networks.nets.cam_classifier.CAMClassifier`, also in training mode).

    Args:
        features: the Grad-CAM layer ``(B, C, *spatial)``, part of the graph that produced ``logits``.
        logits: ``(B, num_classes)``.
        target: class index per image ``(B,)`` (int).
        create_graph: keep the graph of the gradient so the maps are differentiable (training); False at
            evaluation. The forward graph is always retained, so a loss on ``logits`` can still be back-propagated.
        normalise: divide each map by its maximum (+ ``eps``).
        size: output spatial size (e.g. the image or region size); None keeps the feature grid.
        eps: added to the maximum before dividing.

    Returns:
        ``(B, *spatial)`` maps, float32 (of ``features``' grid, or ``size``).

    Raises:
        ValueError: shapes do not fit, or ``features`` is not part of a graph that leads to ``logits``.
    """
    if logits.ndim != 2 or features.ndim < 3 or features.shape[0] != logits.shape[0]:
        raise ValueError(
            f"features must be (B, C, *spatial) and logits (B, num_classes) with the same B, got "
            f"{tuple(features.shape)} and {tuple(logits.shape)}."
        )
    target = torch.as_tensor(target, device=logits.device).reshape(-1).long()
    if target.numel() != logits.shape[0]:
        raise ValueError(f"{target.numel()} targets for a batch of {logits.shape[0]}.")
    if not (features.requires_grad and logits.requires_grad):
        raise ValueError(
            "Grad-CAM needs features and logits computed with gradients enabled (torch.enable_grad()) from a "
            "network with trainable parameters."
        )
    score = logits.gather(1, target[:, None]).sum()
    (grads,) = torch.autograd.grad(score, features, create_graph=create_graph, retain_graph=True)
    spatial = tuple(range(2, features.ndim))
    alpha = grads.float().mean(dim=spatial, keepdim=True)
    cam = F.relu((alpha * features.float()).sum(dim=1))
    if normalise:
        peak = cam.flatten(1).amax(dim=1).reshape(-1, *([1] * len(spatial)))
        cam = cam / (peak + eps)
    if size is not None:
        size = tuple(int(s) for s in size)
        if len(size) != len(spatial):
            raise ValueError(f"size {size} must have {len(spatial)} entries for features {tuple(features.shape)}.")
        if size != tuple(cam.shape[1:]):
            cam = F.interpolate(cam[:, None], size=size, mode=_INTERP[len(size)], align_corners=False)[:, 0]
    return cam


def attention_lambda(
    epoch: int, mode: str | float = "adaptive", slope: float = 0.023, minimum: float = 0.2
) -> float:
    """Weight ``lambda`` of the CE term in ``lambda * CE + (1 - lambda) * L_att``.

    Args:
        epoch: **0-based** epoch (the first epoch is 0: ignite's ``engine.state.epoch - 1``).
        mode: ``"adaptive"``: the paper's ``max(minimum, 1 - slope * epoch)`` (1.0 in the first epoch, 0.2 from
            epoch 35 on); or a fixed number in ``[0, 1]`` (1.0 = CE only, the baseline).
        slope: decrease per epoch of the adaptive schedule (the paper: 0.023).
        minimum: floor of the adaptive schedule (the paper: 0.2).

    Returns:
        lambda in ``[0, 1]``.

    Raises:
        ValueError: unknown mode, a fixed value outside ``[0, 1]`` or a negative epoch.
    """
    if int(epoch) < 0:
        raise ValueError(f"epoch must be >= 0 (0-based), got {epoch!r}.")
    if isinstance(mode, str):
        if mode.lower() != "adaptive":
            try:
                mode = float(mode)
            except ValueError:
                raise ValueError(f"lambda mode must be 'adaptive' or a number in [0, 1], got {mode!r}.") from None
        else:
            return float(max(float(minimum), 1.0 - float(slope) * int(epoch)))
    value = float(mode)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fixed lambda must lie in [0, 1], got {mode!r}.")
    return value


class GradCAMAttentionLoss(nn.Module):
    """``L_att = 1 - sum(region * g(cam)) / sum(region)`` per image, averaged over the batch.

    ``g(cam) = sigmoid((cam - threshold) / tau)`` (``mode="soft"``, differentiable) or ``1[cam > threshold]``
    (``mode="hard"``, the paper's ratio: no gradient). ``cam`` is the normalised Grad-CAM of the target class
    (:func:`grad_cam_maps`) at the region's size. An image whose region is empty (No Finding) has ``L_att = 0``;
    the batch value is the mean over **all** images, No Finding images counted as 0 (the paper's per-image loss
    averaged over the batch), so the term's weight follows the share of disease images in the batch.

    Call it with the Grad-CAM layer and logits (``loss(features, logits, target, region)``) or with ready maps
    (:meth:`from_cam`).

    Args:
        threshold: CAM threshold ``t`` (the paper: 0.5).
        tau: temperature of the soft step (smaller = closer to the hard step), > 0.
        mode: ``"soft"`` (default) or ``"hard"``.
        reduction: ``"mean"`` (over the batch, see above) or ``"none"`` (one value per image).

    Raises:
        ValueError: bad ``mode``, ``tau``, ``threshold`` or ``reduction``.
    """

    def __init__(self, threshold: float = 0.5, tau: float = 0.05, mode: str = "soft", reduction: str = "mean") -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode must be one of {ATTENTION_MODES}, got {mode!r}.")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}.")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1] (the CAM is normalised), got {threshold!r}.")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
        self.threshold = float(threshold)
        self.tau = float(tau)
        self.mode = mode
        self.reduction = reduction

    @property
    def differentiable(self) -> bool:
        """Whether the loss carries a gradient (soft mode)."""
        return self.mode == "soft"

    def gate(self, cam: torch.Tensor) -> torch.Tensor:
        """``g(cam)``: the soft or hard step at the threshold."""
        if self.mode == "hard":
            return (cam.detach() > self.threshold).float()
        return torch.sigmoid((cam - self.threshold) / self.tau)

    def from_cam(self, cam: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """The loss of normalised maps.

        Args:
            cam: ``(B, *spatial)`` or ``(B, 1, *spatial)`` normalised Grad-CAM, resized (bilinear) to the region's
                size if it differs.
            region: ``(B, 1, *spatial)`` class-region masks (0/1).

        Returns:
            the mean over the batch (a scalar) or ``(B,)`` values (``reduction="none"``).
        """
        region = torch.as_tensor(region).float()
        if region.ndim < 3 or region.shape[1] != 1:
            raise ValueError(f"region must be (B, 1, *spatial) masks, got {tuple(region.shape)}.")
        region = region[:, 0]
        if cam.ndim == region.ndim + 1 and cam.shape[1] == 1:
            cam = cam[:, 0]
        if cam.ndim != region.ndim or cam.shape[0] != region.shape[0]:
            raise ValueError(f"cam {tuple(cam.shape)} does not fit region {tuple(region.shape)} (B, 1, *spatial).")
        if region.shape[1:] != cam.shape[1:]:
            cam = F.interpolate(cam[:, None].float(), size=region.shape[1:], mode=_INTERP[cam.ndim - 1],
                                align_corners=False)[:, 0]
        region = region.to(cam.device)
        area = region.flatten(1).sum(1)
        covered = (region * self.gate(cam.float())).flatten(1).sum(1)
        values = torch.where(area > 0, 1.0 - covered / area.clamp_min(1e-12), torch.zeros_like(area))
        return values.mean() if self.reduction == "mean" else values

    def forward(
        self, features: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, region: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            features: the Grad-CAM layer ``(B, C, *spatial)`` in the graph of ``logits``.
            logits: ``(B, num_classes)``.
            target: class per image ``(B,)``.
            region: class-region masks ``(B, 1, *image_spatial)``.

        Returns:
            see :meth:`from_cam`.
        """
        region = torch.as_tensor(region)
        cam = grad_cam_maps(features, logits, target, create_graph=self.differentiable, size=region.shape[2:])
        return self.from_cam(cam, region)
