"""Attention gate (AG) of Oktay et al. for skip connections, and the ``"ag"`` attention name.

The gate sits on a skip connection, not after a block: it re-weights the skip feature ``x`` with
a coarser gating signal ``g`` (the decoder feature one level deeper) before concatenation.

MONAI's :class:`monai.networks.nets.attentionunet.AttentionBlock` is not reused: it expects the
gate already upsampled to the skip's size and projects the skip with a 1x1 conv (plus batch norm),
whereas the original gate projects the skip with a stride-2 ``k2`` conv to the gate's resolution
and upsamples the attention coefficients instead.

``"ag"`` is registered in :mod:`networks.blocks.attention` with ``placement="skip"``, so networks and bundles
select it by name like every other block; its per-level block is the identity, and the networks
(:class:`~networks.nets.unet.AttentionUNet`, :class:`~networks.nets.vnet.AttentionVNet`) build the gate of
every skip connection with :func:`get_skip_gate`, which works for any block registered with that placement.

Paper: Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
https://arxiv.org/abs/1804.03999
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Act, Conv

from .attention import (
    check_options,
    get_attention_spec,
    is_skip_gate,
    register_attention,
)
from .checks import check_positive, check_spatial_dims

__all__ = ["AttentionGate", "SkipPassThrough", "get_skip_gate", "is_skip_gate"]


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection.

    ``theta = conv_k2_s2(x)`` (no bias) brings the skip ``x`` to the gate's resolution,
    ``phi = conv_1x1(g)``; ``alpha = sigmoid(psi(relu(theta + phi)))`` with ``psi`` a 1x1 conv to one
    channel; ``alpha`` is upsampled ((bi/tri)linear) to the skip's size and the output is ``x * alpha``.
    When the gate's size differs from ``theta``'s (odd skip sizes), ``phi`` is interpolated to it.

    Paper: Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
    https://arxiv.org/abs/1804.03999

    Example::

        >>> gate = AttentionGate(spatial_dims=3, skip_channels=16, gate_channels=32)
        >>> gate(torch.rand(1, 16, 32, 32, 16), torch.rand(1, 32, 16, 16, 8)).shape
        torch.Size([1, 16, 32, 32, 16])
    """

    def __init__(
        self, spatial_dims: int, skip_channels: int, gate_channels: int, inter_channels: int | None = None
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            skip_channels: channels of the skip feature ``x``.
            gate_channels: channels of the gating signal ``g``.
            inter_channels: channels of ``theta`` and ``phi``. Defaults to ``max(1, skip_channels // 2)``.

        Raises:
            ValueError: when ``spatial_dims`` is not 2 or 3 or a channel number is not positive.
        """
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        inter = max(1, skip_channels // 2) if inter_channels is None else inter_channels
        check_positive(skip_channels=skip_channels, gate_channels=gate_channels, inter_channels=inter)
        conv = Conv["conv", spatial_dims]
        self.spatial_dims = spatial_dims
        self.skip_channels = skip_channels
        self.gate_channels = gate_channels
        self.inter_channels = inter
        self.theta = conv(skip_channels, inter, kernel_size=2, stride=2, bias=False)
        self.phi = conv(gate_channels, inter, kernel_size=1)
        self.act = Act["relu"]()
        self.psi = conv(inter, 1, kernel_size=1)
        self.gate = Act["sigmoid"]()
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``alpha`` of shape ``(B, 1, *x.shape[2:])``, in (0, 1).

        Args:
            x: skip feature ``(B, skip_channels, *spatial)``, every spatial size at least 2.
            g: gating signal ``(B, gate_channels, *coarse)``, usually ``coarse = spatial // 2``.

        Raises:
            ValueError: when ``x`` or ``g`` has the wrong number of dims or channels.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.skip_channels:
            raise ValueError(
                f"AttentionGate expects the skip (B, {self.skip_channels}, <{self.spatial_dims} spatial dims>), "
                f"got shape {list(x.shape)}."
            )
        if g.ndim != self.spatial_dims + 2 or g.shape[1] != self.gate_channels or g.shape[0] != x.shape[0]:
            raise ValueError(
                f"AttentionGate expects the gate (B={x.shape[0]}, {self.gate_channels}, "
                f"<{self.spatial_dims} spatial dims>), got shape {list(g.shape)}."
            )
        theta = self.theta(x)
        phi = self.phi(g)
        if phi.shape[2:] != theta.shape[2:]:
            phi = F.interpolate(phi, size=theta.shape[2:], mode=self.mode, align_corners=False)
        alpha = self.gate(self.psi(self.act(theta + phi)))
        return F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: skip feature ``(B, skip_channels, *spatial)``.
            g: gating signal ``(B, gate_channels, *coarse)``, the decoder feature one level deeper.

        Returns:
            the gated skip ``x * alpha``, same shape as ``x``.
        """
        return x * self.coefficients(x, g)


class SkipPassThrough(nn.Module):
    """The no-gate counterpart of :class:`AttentionGate`: ``forward(x, g)`` returns ``x`` unchanged."""

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: skip feature ``(B, C, *spatial)``.
            g: gating signal, ignored.

        Returns:
            ``x``.
        """
        return x


def get_skip_gate(name: str, spatial_dims: int, skip_channels: int, gate_channels: int, **kwargs) -> nn.Module:
    """The skip gate for attention ``name``: its registered gate when it is placed on skips (an
    :class:`AttentionGate` for ``"ag"``), else a :class:`SkipPassThrough`.

    Args:
        name: a registered attention name.
        spatial_dims: number of spatial dimensions, 2 or 3.
        skip_channels: channels of the skip feature.
        gate_channels: channels of the gating signal.
        kwargs: options of the gate (``inter_channels`` for ``"ag"``); ignored for blocks placed after levels,
            whose options belong to their per-level blocks.

    Returns:
        a module called as ``gate(skip, g)``.

    Raises:
        ValueError: when ``name`` is not registered or ``kwargs`` holds an option the gate does not take.
    """
    spec = get_attention_spec(name)
    if not spec.is_skip_gate:
        return SkipPassThrough()
    check_options(spec, spatial_dims, skip_channels, gate_channels, **kwargs)
    return spec.builder(spatial_dims, skip_channels, gate_channels, **kwargs)


register_attention("ag", placement="skip")(AttentionGate)
