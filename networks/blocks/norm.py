"""Instance normalisation that keeps a channels-last input channels-last.

PyTorch's ``instance_norm`` reshapes its input to ``(1, B * C, *spatial)`` through ``contiguous()``: a
channels-last tensor is copied to the contiguous layout, and every following convolution converts it back. On a
channels-last window of the PAM UNet (conv -> PReLU -> InstanceNorm, 14 times) these two copies per layer cost
more than the bfloat16 convolutions save. :class:`LayoutPreservingInstanceNorm` computes the same normalisation
through ``batch_norm`` on each sample, which reads and writes the channels-last layout directly, and falls back to
``instance_norm`` for contiguous inputs and in training mode. :func:`replace_instance_norms` swaps it into a network
(:class:`pipelines.inferers.FastSlidingWindowInferer` does so in its channels-last copy of the network).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LayoutPreservingInstanceNorm", "replace_instance_norms"]


class LayoutPreservingInstanceNorm(nn.Module):
    """Drop-in replacement for ``nn.InstanceNorm1d/2d/3d`` that keeps channels-last inputs channels-last.

    Built from an existing instance-norm module (:meth:`from_instance_norm`), whose parameters and buffers it takes
    over under the same names (``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``),
    so state dicts are interchangeable. Outputs equal the original module's up to rounding:

    - a contiguous input, or training mode with ``track_running_stats``: ``torch.nn.functional.instance_norm``,
      exactly as the original;
    - evaluation mode with ``track_running_stats``: ``batch_norm`` with the running statistics (per channel);
    - otherwise (training or evaluation, no running statistics): ``batch_norm`` in training form on each sample
      ``(1, C, *spatial)`` (batch statistics of one sample are its instance statistics, biased variance), which is
      differentiable like ``instance_norm``, so channels-last training keeps its layout too
      (:func:`pipelines.engines.precision.prepare_network`).

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance. Defaults to 1e-5.
        momentum: running-statistics momentum (training mode only). Defaults to 0.1.
        affine: learnable per-channel scale and shift. Defaults to False, as ``nn.InstanceNorm3d``.
        track_running_stats: keep running statistics. Defaults to False.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got num_features={num_features}.")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean: torch.Tensor | None = None
            self.running_var: torch.Tensor | None = None

    @classmethod
    def from_instance_norm(cls, norm: nn.modules.instancenorm._InstanceNorm) -> LayoutPreservingInstanceNorm:
        """A replacement for ``norm`` that shares its parameters and buffers (not copies) and its mode."""
        new = cls(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
        new.weight, new.bias = norm.weight, norm.bias
        if norm.track_running_stats:
            new.running_mean, new.running_var = norm.running_mean, norm.running_var
            new.num_batches_tracked = norm.num_batches_tracked
        return new.train(norm.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input ``(B, C, *spatial)``, any memory format.

        Returns:
            the normalised input, same shape, dtype and (for channels-last inputs) memory format.
        """
        if x.ndim < 3 or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}(num_features={self.num_features}) expects input (B, {self.num_features}, "
                f"*spatial), got shape {list(x.shape)}."
            )
        if x.is_contiguous() or (self.training and self.track_running_stats):
            return F.instance_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias,
                use_input_stats=self.training or not self.track_running_stats,
                momentum=0.1 if self.momentum is None else self.momentum, eps=self.eps,
            )
        if self.track_running_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        if x.shape[0] == 1:
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        # cat keeps the layout of its (channels-last) inputs
        return torch.cat(
            [F.batch_norm(s, None, None, self.weight, self.bias, True, 0.0, self.eps) for s in x.split(1)]
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


def replace_instance_norms(module: nn.Module) -> int:
    """Replace every ``nn.InstanceNorm1d/2d/3d`` inside ``module`` (in place) by a
    :class:`LayoutPreservingInstanceNorm` sharing its parameters; returns how many were replaced.

    Raises:
        TypeError: when ``module`` itself is an instance norm (there is no parent to put the replacement in).
    """
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        raise TypeError("replace_instance_norms replaces the instance norms inside a module, got an instance norm.")
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.modules.instancenorm._InstanceNorm):
            setattr(module, name, LayoutPreservingInstanceNorm.from_instance_norm(child))
            count += 1
        else:
            count += replace_instance_norms(child)
    return count
