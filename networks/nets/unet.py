"""The UNet of the PAM paper with a pluggable attention block after every encoder and decoder level.

Backbone as in "Progressive attention module for segmentation of volumetric medical images",
Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369 (there a 3D UNet with
channels 16, 32, 64, 128); one class serves 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv, Pool

from networks.blocks.attention_gate import get_skip_gate
from networks.nets.encoder_decoder import (
    AttentionEncoderDecoder,
    DecoderLevel,
    EncoderLevel,
    segmentation_test_config,
)
from networks.registry import register_network

__all__ = ["AttentionUNet", "UNET_FEATURES"]

_INTERP_MODES = ("nearest", "linear", "bilinear", "trilinear")


class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each conv (bias) -> act -> norm [-> dropout]."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple,
        bias: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        drop = dropout if dropout > 0 else None
        for name, c_in, c_out in (("conv_0", in_channels, mid_channels), ("conv_1", mid_channels, out_channels)):
            conv = Convolution(
                spatial_dims,
                c_in,
                c_out,
                kernel_size=3,
                adn_ordering="AND",
                act=act,
                norm=norm,
                dropout=drop,
                bias=bias,
            )
            self.add_module(name, conv)


UNET_FEATURES = (16, 32, 64, 128)
"""The PAM paper's UNet widths."""


@register_network(
    "unet",
    defaults={"features": UNET_FEATURES},
    test_config=segmentation_test_config(),
)
class AttentionUNet(AttentionEncoderDecoder):
    """UNet of the PAM paper with an attention block after every encoder and decoder level.

    Not to be confused with MONAI's :class:`monai.networks.nets.AttentionUnet`, which gates the
    skip connections (Oktay et al.); here ``attention`` names a block from
    :mod:`networks.blocks.attention` (``"none"``, ``"se"``, ``"pam"``, ...) placed after the double
    conv of every encoder level (the deepest acting as the bottleneck) and of every decoder level:
    ``2 * len(features) - 1`` blocks, 7 for the default.

    - encoder level ``i``: [max-pool 2 ->] conv3x3 ``-> max(features[i] // 2, c_in)`` -> conv3x3
      ``-> features[i]``, each conv with bias -> act -> norm (the original's order);
    - decoder level ``i``: interpolate to the skip's size (``align_corners=False``), concatenate
      ``[skip, up]``, conv3x3 ``-> features[i]`` -> conv3x3 ``-> features[i]``;
    - head: 1x1 conv to ``out_channels`` logits, no activation.

    ``attention="ag"`` (Oktay et al.'s attention gate) places no block after the levels; instead the
    skip of decoder level ``i`` is gated by the feature one level deeper (the decoder input ``x``) with
    :class:`~networks.blocks.attention_gate.AttentionGate` before the concatenation: ``len(features) - 1``
    gates.

    Slice-sized blocks such as ``"pam"`` need ``patch_size``: the block of level ``i`` is built for
    ``patch_size[slice_axis] // 2**i`` slices and the network only accepts inputs of that depth
    (use sliding-window inference with ``roi_size=patch_size``).

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369

    Example::

        >>> net = AttentionUNet(spatial_dims=3, in_channels=4, out_channels=3, patch_size=(48, 48, 32))
        >>> net(torch.rand(1, 4, 48, 48, 32)).shape
        torch.Size([1, 3, 48, 48, 32])
        >>> net2d = AttentionUNet(spatial_dims=2, in_channels=1, out_channels=2, attention="se")
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = UNET_FEATURES,
        attention: str = "pam",
        patch_size: Sequence[int] | None = None,
        slice_axis: int = -1,
        act: str | tuple = ("prelu", {}),
        norm: str | tuple = ("instance", {"affine": True}),
        bias: bool = True,
        upsample: str = "trilinear",
        attention_kwargs: dict | None = None,
        dropout: float = 0.0,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3. Defaults to 3.
            in_channels: number of input channels. Defaults to 4 (BraTS modalities).
            out_channels: number of output channels (logits). Defaults to 3.
            features: channels per level, at least two levels. Defaults to ``(16, 32, 64, 128)``.
            attention: registered attention block name. Defaults to ``"pam"``.
            patch_size: spatial size of the training patch; required by slice-sized attention
                (``"pam"``), whose depth ``patch_size[slice_axis]`` must be divisible by
                ``2 ** (len(features) - 1)``.
            slice_axis: index of the slice axis among the spatial dims. Defaults to -1 (Z of MONAI's
                ``(B, C, X, Y, Z)``).
            act: activation type and arguments. Defaults to PReLU.
            norm: normalisation type and arguments. Defaults to affine instance norm.
            bias: whether the convolutions have a bias. Defaults to True.
            upsample: interpolation mode of the decoder: ``"trilinear"`` (default), ``"bilinear"``
                and ``"linear"`` all mean (bi/tri)linear for ``spatial_dims``; or ``"nearest"``.
            attention_kwargs: options of the attention block, e.g. ``{"slice_reduction": 16,
                "channel_reduction": 8, "pool": "avg"}`` for ``"pam"`` or ``{"inter_channels": 8}`` for ``"ag"``.
            dropout: dropout ratio after each conv unit. Defaults to no dropout.

        Raises:
            ValueError: on an unsupported ``spatial_dims``, fewer than two ``features``, an unknown
                ``attention`` or ``upsample``, a ``patch_size`` of the wrong length, or a missing or
                indivisible ``patch_size`` for slice-sized attention.
        """
        if upsample not in _INTERP_MODES:
            raise ValueError(f"upsample must be one of {_INTERP_MODES}, got upsample={upsample!r}.")
        super().__init__(
            spatial_dims, in_channels, out_channels, features, attention, patch_size, slice_axis, dropout,
            divisible_input=False,
        )
        features = self.features
        mode = upsample if upsample == "nearest" else ("bilinear" if spatial_dims == 2 else "trilinear")
        align_corners = None if mode == "nearest" else False
        options = dict(attention_kwargs or {})

        encoder = []
        c_in = in_channels
        for level, c_out in enumerate(features):
            down = nn.Identity() if level == 0 else Pool["max", spatial_dims](kernel_size=2)
            convs = _DoubleConv(spatial_dims, c_in, max(c_out // 2, c_in), c_out, act, norm, bias, dropout)
            encoder.append(EncoderLevel(down, convs, self.level_attention(c_out, level, options)))
            c_in = c_out
        self.encoder = nn.ModuleList(encoder)

        decoder = []
        for level in range(len(features) - 2, -1, -1):
            c_out = features[level]
            convs = _DoubleConv(spatial_dims, c_out + c_in, c_out, c_out, act, norm, bias, dropout)
            gate = get_skip_gate(attention, spatial_dims, c_out, c_in, **options)
            attn = self.level_attention(c_out, level, options)
            decoder.append(DecoderLevel(nn.Identity(), convs, attn, gate, mode, align_corners, skip_first=True))
            c_in = c_out
        self.decoder = nn.ModuleList(decoder)

        self.head = Conv["conv", spatial_dims](features[0], out_channels, kernel_size=1)
