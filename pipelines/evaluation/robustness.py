"""Adversarial robustness of classifiers: projected gradient descent (PGD) in the [0, 1] image space.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018; the LA-Net paper
(Fan et al., Medical Image Analysis 90 (2023) 102960) evaluates with eps 8/255, step 2/255, 4 steps and a
random start, before the normalisation to the network's input range.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.nets.lanet import split_outputs

__all__ = ["pgd_attack", "to_minus_one_one"]


def to_minus_one_one(x: torch.Tensor) -> torch.Tensor:
    """Map images in [0, 1] to [-1, 1] (the BUSI pipeline's normalisation)."""
    return x * 2.0 - 1.0


def pgd_attack(
    model: nn.Module,
    images01: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    step: float = 2 / 255,
    steps: int = 4,
    random_start: bool = True,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = to_minus_one_one,
    seed: int | None = 0,
) -> torch.Tensor:
    """L-infinity PGD on the cross-entropy of the model's logits.

    Each step: ``x <- clip_[0,1](clip_eps-ball(x + step * sign(grad_x CE(model(normalize(x)), y))))``. The model
    is run in eval mode (its mode is restored afterwards); parameter gradients are left untouched.

    Args:
        model: returns logits ``(B, num_classes)``, an LA-Net dict with ``"logits"`` or a ``(logits, mask)``
            tuple.
        images01: clean images in [0, 1], ``(B, C, *spatial)``.
        labels: true classes ``(B,)``.
        eps: radius of the L-infinity ball.
        step: step size.
        steps: number of steps (0 returns the (randomly started) images).
        random_start: start from a uniform point in the ball.
        normalize: maps [0, 1] images to the network input (default ``x * 2 - 1``; None = identity).
        seed: seed of the random start (None: the global generator).

    Returns:
        adversarial images in [0, 1], detached, same shape as ``images01``, within ``eps`` of it.

    Raises:
        ValueError: negative ``eps``, ``step`` or ``steps``, or images outside [0, 1].
    """
    if eps < 0 or step < 0 or steps < 0:
        raise ValueError(f"eps, step and steps must be non-negative, got {eps!r}, {step!r}, {steps!r}.")
    clean = images01.detach().float()
    if clean.numel() and (clean.min() < 0 or clean.max() > 1):
        raise ValueError(
            f"pgd_attack works in the [0, 1] image space; got values in [{clean.min().item():.3g}, "
            f"{clean.max().item():.3g}] (pass the images before normalisation and set `normalize`)."
        )
    normalize = normalize or (lambda x: x)
    labels = torch.as_tensor(labels, device=clean.device).reshape(-1).long()
    lower, upper = (clean - eps).clamp(0, 1), (clean + eps).clamp(0, 1)
    adv = clean.clone()
    if random_start and eps > 0:
        generator = None
        if seed is not None:
            generator = torch.Generator(device=clean.device).manual_seed(int(seed))
        noise = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        adv = torch.max(torch.min(adv + (noise * 2 - 1) * eps, upper), lower)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            adv.requires_grad_(True)
            logits, _ = split_outputs(model(normalize(adv)))
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + step * grad.sign()
                adv = torch.max(torch.min(adv, upper), lower)
            adv = adv.detach()
    finally:
        model.train(was_training)
    return adv.detach()
