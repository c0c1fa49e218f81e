"""The attention blocks the PAM paper compares against: scA, csA, Project & Excitation and CBAM.

Every block maps ``(B, C, *spatial)`` to the same shape, takes ``spatial_dims`` first (2 or 3) and
is registered in :mod:`networks.blocks.attention` by name:

- ``"scse"``: :class:`SliceChannelAttention` (the paper's scA), slice attention then channel SE;
- ``"csse"``: :class:`ChannelSliceAttention` (csA), channel SE then slice attention;
- ``"pe"``: :class:`ProjectExcite`, Project & Excitation (Rickmann et al., MICCAI 2019);
- ``"cbam"``: :class:`ConvBlockAttention`, CBAM (Woo et al., ECCV 2018).

The skip-connection attention gate ``"ag"`` lives in :mod:`networks.blocks.attention_gate`.

Paper comparing them: "Progressive attention module for segmentation of volumetric medical
images", Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369
"""

from __future__ import annotations

import torch
import torch.nn as nn

from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.factories import Act, Conv, Norm, split_args

from .attention import register_attention
from .pam import SliceAttention, _check_positive, _check_spatial_dims, check_block_input, pool_over

__all__ = ["SliceChannelAttention", "ChannelSliceAttention", "ProjectExcite", "ConvBlockAttention"]


def _channel_se(spatial_dims: int, channels: int, reduction: int) -> ChannelSELayer:
    """MONAI's SE block (global average pool, FC, ReLU, FC, sigmoid, multiply) with ``r`` clamped to ``channels``."""
    return ChannelSELayer(spatial_dims, channels, r=min(reduction, channels))


class SliceChannelAttention(nn.Module):
    """scA ("scSE" in the PAM paper's code): per-channel slice attention, then channel squeeze-and-excitation.

    ``x~ = SA(x)`` (:class:`~networks.blocks.pam.SliceAttention`, one MLP per channel over the ``D``
    slices), then ``SE(x~)`` squeezes over the whole volume (no key-slice selection, unlike PAM).
    The slice reduction ``r_D`` is clamped to ``num_slices`` and ``r_C`` to ``channels``.

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_slices: int,
        slice_reduction: int = 16,
        channel_reduction: int = 8,
        pool: str = "avg",
        slice_axis: int = -1,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of channels ``C``.
            num_slices: number of slices ``D`` along ``slice_axis`` the block is built for.
            slice_reduction: slice reduction ``r_D`` (clamped to ``num_slices``). Defaults to 16.
            channel_reduction: SE reduction ``r_C`` (clamped to ``channels``). Defaults to 8.
            pool: in-plane pooling of slice attention, ``"avg"``, ``"max"`` or ``"avgmax"``.
            slice_axis: index of the slice axis among the spatial dims. Defaults to -1.

        Raises:
            ValueError: on invalid arguments (see :class:`~networks.blocks.pam.SliceAttention`).
        """
        super().__init__()
        _check_positive(num_slices=num_slices, slice_reduction=slice_reduction, channel_reduction=channel_reduction)
        self.slice_attention = SliceAttention(
            spatial_dims, channels, num_slices, min(slice_reduction, num_slices), pool, slice_axis
        )
        self.channel_se = _channel_se(spatial_dims, channels, channel_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input ``(B, C, *spatial)`` with ``num_slices`` slices along ``slice_axis``.

        Returns:
            ``SE(SA(x))``, same shape as ``x``.
        """
        return self.channel_se(self.slice_attention(x))


class ChannelSliceAttention(SliceChannelAttention):
    """csA: channel squeeze-and-excitation, then per-channel slice attention (the order of scA reversed).

    Same parameters as :class:`SliceChannelAttention`; output ``SA(SE(x))``.

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input ``(B, C, *spatial)`` with ``num_slices`` slices along ``slice_axis``.

        Returns:
            ``SA(SE(x))``, same shape as ``x``.
        """
        return self.slice_attention(self.channel_se(x))


def _mean_keepdim(x: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """``torch.mean(x, dim=dims, keepdim=True)`` through :func:`~networks.blocks.pam.pool_over` (fast for
    channels-last inputs)."""
    shape = [1 if d in dims else s for d, s in enumerate(x.shape)]
    return pool_over(x, dims, "avg").reshape(shape)


class ProjectExcite(nn.Module):
    """Project & Excitation (PE).

    Each spatial axis gets a projection: the mean over all the other spatial axes, e.g. in 3D
    ``(B, C, D, 1, 1)``, ``(B, C, 1, H, 1)`` and ``(B, C, 1, 1, W)``. The projections are broadcast-summed
    to ``Z`` of shape ``(B, C, *spatial)``, then ``conv1x1 C -> C // r, act, conv1x1 -> C, sigmoid`` gives
    the excitation map ``A`` and the output is ``x * A``. In 2D the two row/column projections are summed.

    Paper: Rickmann et al., "'Project & Excite' Modules for Segmentation of Volumetric Medical Scans",
    MICCAI 2019, https://arxiv.org/abs/1906.04649

    Example::

        >>> pe = ProjectExcite(spatial_dims=3, channels=16)
        >>> pe(torch.rand(2, 16, 8, 12, 10)).shape
        torch.Size([2, 16, 8, 12, 10])
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 2, act: str | tuple = "relu") -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of channels ``C``.
            reduction: channel reduction ``r``; the hidden width is ``max(1, C // r)``. Defaults to 2.
            act: activation between the two 1x1 convs, e.g. ``"relu"`` (default, as Rickmann et al.)
                or ``"prelu"`` (as in the PAM paper's comparison).

        Raises:
            ValueError: when ``spatial_dims`` is not 2 or 3 or ``channels`` or ``reduction`` is not positive.
        """
        super().__init__()
        _check_spatial_dims(spatial_dims, type(self).__name__)
        _check_positive(channels=channels, reduction=reduction)
        self.spatial_dims = spatial_dims
        self.channels = channels
        hidden = max(1, channels // reduction)
        act_name, act_args = split_args(act)
        conv = Conv["conv", spatial_dims]
        self.excite = nn.Sequential(
            conv(channels, hidden, kernel_size=1),
            Act[act_name](**act_args),
            conv(hidden, channels, kernel_size=1),
            Act["sigmoid"](),
        )
        # for each spatial axis, the other spatial axes to average over
        self._other_dims = [
            [2 + j for j in range(spatial_dims) if j != i] for i in range(spatial_dims)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input ``(B, C, *spatial)``.

        Returns:
            the excited features, same shape as ``x``.

        Raises:
            ValueError: when ``x`` does not have ``channels`` channels and ``spatial_dims`` spatial dims.
        """
        check_block_input(x, "ProjectExcite", self.channels, self.spatial_dims)
        z = _mean_keepdim(x, self._other_dims[0])
        for dims in self._other_dims[1:]:
            z = z + _mean_keepdim(x, dims)  # broadcast-sum to (B, C, *spatial)
        return x * self.excite(z)


class _CBAMChannelGate(nn.Module):
    """Average- and max-pooled channel vectors through one shared MLP, summed, sigmoid, multiply."""

    def __init__(self, spatial_dims: int, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), Act["relu"](), nn.Linear(hidden, channels))
        self.gate = Act["sigmoid"]()
        self._spatial: list[int] = [2 + i for i in range(spatial_dims)]
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(pool_over(x, self._spatial, "avg")) + self.mlp(pool_over(x, self._spatial, "max"))
        w = self.gate(logits)
        return x * w.view([w.shape[0], w.shape[1]] + [1] * self.spatial_dims)


class _CBAMSpatialGate(nn.Module):
    """``[max, mean]`` over channels -> conv k (-> norm) -> sigmoid of the conv output -> multiply."""

    def __init__(self, spatial_dims: int, kernel_size: int, norm: str | tuple | None) -> None:
        super().__init__()
        self.conv = Conv["conv", spatial_dims](
            2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=norm is None
        )
        self.norm = nn.Identity()
        if norm is not None:
            norm_name, norm_args = split_args(norm)
            self.norm = Norm[norm_name, spatial_dims](1, **norm_args)
        self.gate = Act["sigmoid"]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([torch.amax(x, dim=1, keepdim=True), torch.mean(x, dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.norm(self.conv(pooled)))


class ConvBlockAttention(nn.Module):
    """CBAM: a channel gate then a spatial gate, for 2D and 3D features.

    - channel gate: the global average- and max-pooled vectors ``(B, C)`` go through one shared MLP
      ``Linear(C -> max(1, C // r)), ReLU, Linear(-> C)``; the two outputs are summed, passed through a
      sigmoid and multiply the channels;
    - spatial gate: ``[max over C, mean over C]`` ``(B, 2, *spatial)`` -> conv ``k`` (``2 -> 1``, "same"
      padding) -> optional norm -> sigmoid -> multiply every position.

    The original CBAM-3D code of the PAM paper applies the sigmoid of its spatial gate to the gate's
    *input* instead of the conv output (so the conv had no effect on the result); here the sigmoid is
    applied to the conv output, as in Woo et al.

    Paper: Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521

    Example::

        >>> cbam = ConvBlockAttention(spatial_dims=2, channels=32)
        >>> cbam(torch.rand(2, 32, 24, 24)).shape
        torch.Size([2, 32, 24, 24])
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        spatial_norm: str | tuple | None = None,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of channels ``C``.
            reduction: channel-gate reduction ``r``; the hidden width is ``max(1, C // r)``, so ``r`` is
                effectively clamped to ``C``. Defaults to 16.
            kernel_size: odd kernel size of the spatial-gate conv. Defaults to 7.
            spatial_norm: optional norm after the spatial-gate conv, e.g. ``"batch"`` (Woo et al.'s code);
                the conv has a bias only without it. Defaults to None.

        Raises:
            ValueError: when ``spatial_dims`` is not 2 or 3, ``channels`` or ``reduction`` is not positive,
                or ``kernel_size`` is not a positive odd number.
        """
        super().__init__()
        _check_spatial_dims(spatial_dims, type(self).__name__)
        _check_positive(channels=channels, reduction=reduction)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got kernel_size={kernel_size}.")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.channel_gate = _CBAMChannelGate(spatial_dims, channels, reduction)
        self.spatial_gate = _CBAMSpatialGate(spatial_dims, kernel_size, spatial_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input ``(B, C, *spatial)``.

        Returns:
            the attended features, same shape as ``x``.

        Raises:
            ValueError: when ``x`` does not have ``channels`` channels and ``spatial_dims`` spatial dims.
        """
        check_block_input(x, "ConvBlockAttention", self.channels, self.spatial_dims)
        return self.spatial_gate(self.channel_gate(x))


@register_attention("scse", needs_slices=True)
def _build_scse(
    spatial_dims: int,
    channels: int,
    num_slices: int | None = None,
    slice_axis: int = -1,
    slice_reduction: int = 16,
    channel_reduction: int = 8,
    pool: str = "avg",
) -> nn.Module:
    """scA: slice attention then channel SE, see :class:`SliceChannelAttention`."""
    if num_slices is None:
        raise ValueError("attention 'scse' needs num_slices.")
    return SliceChannelAttention(
        spatial_dims, channels, num_slices, slice_reduction, channel_reduction, pool, slice_axis
    )


@register_attention("csse", needs_slices=True)
def _build_csse(
    spatial_dims: int,
    channels: int,
    num_slices: int | None = None,
    slice_axis: int = -1,
    slice_reduction: int = 16,
    channel_reduction: int = 8,
    pool: str = "avg",
) -> nn.Module:
    """csA: channel SE then slice attention, see :class:`ChannelSliceAttention`."""
    if num_slices is None:
        raise ValueError("attention 'csse' needs num_slices.")
    return ChannelSliceAttention(
        spatial_dims, channels, num_slices, slice_reduction, channel_reduction, pool, slice_axis
    )


@register_attention("pe")
def _build_pe(
    spatial_dims: int,
    channels: int,
    num_slices: int | None = None,
    slice_axis: int = -1,
    reduction: int = 2,
    act: str | tuple = "relu",
) -> nn.Module:
    """Project & Excitation, see :class:`ProjectExcite`."""
    return ProjectExcite(spatial_dims, channels, reduction=reduction, act=act)


@register_attention("cbam")
def _build_cbam(
    spatial_dims: int,
    channels: int,
    num_slices: int | None = None,
    slice_axis: int = -1,
    reduction: int = 16,
    kernel_size: int = 7,
    spatial_norm: str | tuple | None = None,
) -> nn.Module:
    """CBAM, see :class:`ConvBlockAttention`."""
    return ConvBlockAttention(
        spatial_dims, channels, reduction=reduction, kernel_size=kernel_size, spatial_norm=spatial_norm
    )
