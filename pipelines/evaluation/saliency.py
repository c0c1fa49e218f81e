"""Grad-CAM on the last backbone stage of the BUSI classifiers.

Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017. A small implementation rather than :class:`monai.visualize.GradCAM`, which expects a
logits tensor (LA-Net returns a dict), leaves its hooks on the network, zeroes the parameter gradients and,
for a batch, mixes the scores of the samples' classes (``logits[:, class_idx]`` with a per-sample index). Here
the hook lives for one call, the score is each sample's own class and the gradient is taken with
:func:`torch.autograd.grad` (parameter ``.grad`` untouched).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.nets.lanet import split_outputs

__all__ = ['grad_cam', 'strip_wrapper_prefix', 'unwrap_model']

_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside ``DistributedDataParallel`` / ``DataParallel`` wrappers (nested ones too); others as is."""
    while isinstance(model, _WRAPPERS):
        model = model.module
    return model


def strip_wrapper_prefix(name: str) -> str:
    """A module name of the wrapped model (``"module.backbone.layer4"``) as a name in the unwrapped one."""
    while name.startswith("module."):
        name = name[len("module."):]
    return name


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
            the LA-Net backbones. A model wrapped in ``DistributedDataParallel`` / ``DataParallel`` is unwrapped
            first (:func:`unwrap_model`) and the wrapper's ``module.`` prefix, if given, is dropped: the maps are
            computed on this process's replica, without the wrapper's gradient synchronisation (a backward pass
            through DDP that reaches no parameter would leave its reducer waiting for the next iteration).

    Returns:
        ``(B, 1, H, W)`` float32 in [0, 1].

    Raises:
        ValueError: ``target_layer`` is not a module of ``model``.
    """
    model, target_layer = unwrap_model(model), strip_wrapper_prefix(target_layer)
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
