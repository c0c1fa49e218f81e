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

from .attention import (
    SLICE_BLOCK_VNET,
    plain_block_builder,
    register_attention,
    slice_block_builder,
)
from .checks import check_block_input, check_positive, check_spatial_dims
from .pam import SliceAttention, pool_over

__all__ = [
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "ChannelSliceAttention",
    "ConvBlockAttention",
    "ProjectExcite",
    "SliceChannelAttention",
]


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
        check_positive(num_slices=num_slices, slice_reduction=slice_reduction, channel_reduction=channel_reduction)
        self.slice_attention = SliceAttention(
            spatial_dims, channels, num_slices, min(slice_reduction, num_slices), pool, slice_axis
        )
        self.channel_se = ChannelSELayer(spatial_dims, channels, r=min(channel_reduction, channels))

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
        check_spatial_dims(spatial_dims, type(self).__name__)
        check_positive(channels=channels, reduction=reduction)
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


class CBAMChannelGate(nn.Module):
    """CBAM's channel attention (CAM): the average- and max-pooled channel vectors through one shared MLP
    ``Linear(C -> max(1, C // r)), ReLU, Linear(-> C)``, summed, sigmoid, multiply the channels."""

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16) -> None:
        super().__init__()
        check_positive(channels=channels, reduction=reduction)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), Act["relu"](), nn.Linear(hidden, channels))
        self.gate = Act["sigmoid"]()
        self._spatial: list[int] = [2 + i for i in range(spatial_dims)]
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(pool_over(x, self._spatial, "avg")) + self.mlp(pool_over(x, self._spatial, "max"))
        w = self.gate(logits)
        return x * w.view([w.shape[0], w.shape[1]] + [1] * self.spatial_dims)


class CBAMSpatialGate(nn.Module):
    """CBAM's spatial attention (SAM): ``[max over C, mean over C]`` -> ``num_convs`` convs -> sigmoid of the
    last conv's output -> multiply every position.

    The convs (kernel ``k``, "same" padding) map ``2 -> hidden -> ... -> 1``; each is followed by ``norm`` when
    given (then it has no bias) and all but the last by ReLU. One conv without norm is Woo et al.'s gate; LA-Net
    uses three 3x3 convs with batch norm. Layers live in ``self.convs`` (conv, [norm], [relu], conv, ...).
    """

    def __init__(
        self,
        spatial_dims: int,
        kernel_size: int = 7,
        norm: str | tuple | None = None,
        num_convs: int = 1,
        hidden: int = 8,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got kernel_size={kernel_size}.")
        check_positive(num_convs=num_convs, hidden=hidden)
        conv = Conv["conv", spatial_dims]
        layers: list[nn.Module] = []
        c_in = 2
        for i in range(num_convs):
            c_out = 1 if i == num_convs - 1 else hidden
            layers.append(conv(c_in, c_out, kernel_size=kernel_size, padding=kernel_size // 2, bias=norm is None))
            if norm is not None:
                norm_name, norm_args = split_args(norm)
                layers.append(Norm[norm_name, spatial_dims](c_out, **norm_args))
            if i < num_convs - 1:
                layers.append(Act["relu"]())
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.gate = Act["sigmoid"]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([torch.amax(x, dim=1, keepdim=True), torch.mean(x, dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.convs(pooled))


class ConvBlockAttention(nn.Module):
    """CBAM: a channel gate (``cam``) then a spatial gate (``sam``), for 2D and 3D features; the one CBAM of the
    project (the ``"cbam"`` attention block and LA-Net's per-stage attention).

    - channel gate (:class:`CBAMChannelGate`): the global average- and max-pooled vectors ``(B, C)`` go through
      one shared MLP ``Linear(C -> max(1, C // r)), ReLU, Linear(-> C)``; the two outputs are summed, passed
      through a sigmoid and multiply the channels;
    - spatial gate (:class:`CBAMSpatialGate`): ``[max over C, mean over C]`` ``(B, 2, *spatial)`` -> conv ``k``
      (``2 -> 1``, "same" padding; or a stack of ``spatial_convs`` convs) -> optional norm -> sigmoid -> multiply
      every position.

    Either gate can be switched off (``use_cam``, ``use_sam``; it is then the identity and has no parameters).

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
        spatial_convs: int = 1,
        spatial_hidden: int = 8,
        use_cam: bool = True,
        use_sam: bool = True,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of channels ``C``.
            reduction: channel-gate reduction ``r``; the hidden width is ``max(1, C // r)``, so ``r`` is
                effectively clamped to ``C``. Defaults to 16.
            kernel_size: odd kernel size of the spatial-gate convs. Defaults to 7.
            spatial_norm: optional norm after each spatial-gate conv, e.g. ``"batch"`` (Woo et al.'s code);
                the convs have a bias only without it. Defaults to None.
            spatial_convs: number of spatial-gate convs (``2 -> spatial_hidden -> ... -> 1``). Defaults to 1.
            spatial_hidden: channels between the spatial-gate convs. Defaults to 8.
            use_cam: whether to apply the channel gate. Defaults to True.
            use_sam: whether to apply the spatial gate. Defaults to True.

        Raises:
            ValueError: when ``spatial_dims`` is not 2 or 3, ``channels``, ``reduction``, ``spatial_convs`` or
                ``spatial_hidden`` is not positive, or ``kernel_size`` is not a positive odd number.
        """
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        check_positive(channels=channels, reduction=reduction)
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.cam = CBAMChannelGate(spatial_dims, channels, reduction) if use_cam else nn.Identity()
        self.sam = (
            CBAMSpatialGate(spatial_dims, kernel_size, spatial_norm, spatial_convs, spatial_hidden)
            if use_sam
            else nn.Identity()
        )

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """``sam(cam(x))`` after checking that ``x`` is ``(B, channels, *spatial)``; see :meth:`forward`."""
        check_block_input(x, "ConvBlockAttention", self.channels, self.spatial_dims)
        return self.sam(self.cam(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input ``(B, C, *spatial)``.

        Returns:
            the attended features, same shape as ``x``.

        Raises:
            ValueError: when ``x`` does not have ``channels`` channels and ``spatial_dims`` spatial dims.
        """
        return self.attend(x)


register_attention("scse", needs_slices=True, **SLICE_BLOCK_VNET)(slice_block_builder(SliceChannelAttention))
register_attention("csse", needs_slices=True, **SLICE_BLOCK_VNET)(slice_block_builder(ChannelSliceAttention))
register_attention("pe")(plain_block_builder(ProjectExcite))
register_attention("cbam")(plain_block_builder(ConvBlockAttention))
