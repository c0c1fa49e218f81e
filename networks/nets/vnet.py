"""The VNet of the PAM paper with a pluggable attention block after every encoder and decoder stage.

Backbone: Milletari et al., "V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image
Segmentation", 3DV 2016, https://arxiv.org/abs/1606.04797, as used with attention in
"Progressive attention module for segmentation of volumetric medical images", Medical Physics
49(1):295-308, 2022, https://doi.org/10.1002/mp.15369. One class serves 2D and 3D.

MONAI's :class:`monai.networks.nets.VNet` is the same family, but its transitions are not reused:
they hard-code batch norm, the channel widths (16 doubling, the input stage only for in_channels
dividing 16) and dropout on every skip, and offer no place for a block between a stage's residual
convolutions and the next downsampling. The stages here are built with MONAI's layer factories.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Act, Conv, split_args

from networks.blocks.attention import get_attention_block, get_attention_spec
from networks.blocks.attention_gate import get_skip_gate
from networks.nets.encoder_decoder import (
    AttentionEncoderDecoder,
    DecoderLevel,
    EncoderLevel,
    segmentation_test_config,
)
from networks.registry import register_network

__all__ = ["AttentionVNet", "VNET_FEATURES"]


def _act_spec(act: str | tuple, channels: int) -> tuple[str, dict]:
    """``(name, args)`` of ``act``; PReLU gets one slope per channel as in VNet unless told otherwise."""
    name, args = split_args(act)
    if name.lower() == "prelu" and "num_parameters" not in args:
        args = {**args, "num_parameters": channels}
    return name, dict(args)


def _act_layer(act: str | tuple, channels: int) -> nn.Module:
    name, args = _act_spec(act, channels)
    return Act[name](**args)


class _ResidualStage(nn.Module):
    """``n`` conv k units (conv -> norm -> act, the last without act) on ``x``, then ``act(out + proj(x))``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: int,
        num_convs: int,
        kernel_size: int,
        act: str | tuple,
        norm: str | tuple,
        bias: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        drop = dropout if dropout > 0 else None
        convs = []
        for i in range(num_convs):
            last = i == num_convs - 1
            convs.append(
                Convolution(
                    spatial_dims,
                    in_channels if i == 0 else channels,
                    channels,
                    kernel_size=kernel_size,
                    adn_ordering="NDA",
                    act=None if last else _act_spec(act, channels),
                    norm=norm,
                    dropout=drop,
                    bias=bias,
                )
            )
        self.convs = nn.Sequential(*convs)
        # the original repeats the input along the channels; a 1x1 projection works for any in_channels
        self.residual = (
            nn.Identity()
            if in_channels == channels
            else Conv["conv", spatial_dims](in_channels, channels, kernel_size=1, bias=False)
        )
        self.act = _act_layer(act, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.residual(x))


VNET_FEATURES = (16, 32, 64, 128, 256)
"""Milletari et al.'s VNet widths."""


@register_network(
    "vnet",
    defaults={"features": VNET_FEATURES, "norm": ("batch", {}), "kernel_size": 5},
    test_config=segmentation_test_config(kernel_size=3),
)
class AttentionVNet(AttentionEncoderDecoder):
    """VNet of the PAM paper with an attention block after every encoder and decoder stage.

    With ``L = len(features)`` levels (5 by default):

    - encoder stage ``i < L - 1``: [stride-2 conv k2 ``features[i-1] -> features[i]`` (norm, act) ->]
      residual stage of ``num_convs[i]`` conv k (5) units at ``features[i]`` -> attention (before the
      next downsampling). Stage 0 adds a 1x1 projection of the input as its residual.
    - bottleneck (level ``L - 1``): downsampling and residual stage as above, then channel SE
      (``r = r_C``) for slice-sized attention (``"pam"``, ``"scse"``, ``"csse"``: its depth may be 1),
      the chosen block for the others (the attention registry's ``vnet_bottleneck``);
    - decoder stage ``i`` (``L - 2`` down to 0): transposed conv k2 s2 to ``features[i]`` (norm, act),
      concatenate with the skip to ``2 * features[i]`` channels, residual stage of ``num_convs[i]``
      units at that width, attention;
    - head: 1x1 conv ``2 * features[0] -> out_channels`` logits.

    Each conv unit is conv -> norm -> act (the last of a residual stage adds the residual before its
    act). The defaults (``num_convs=(1, 2, 3, 3, 3)``, kernel 5, PReLU, batch norm, widths 16 to 256)
    are Milletari et al.'s VNet: stages repeated 1/2/3/3 in the encoder, 3 in the bottleneck and
    3/3/2/1 in the decoder.

    ``attention="ag"`` (not in the PAM paper for VNet) is supported as in
    :class:`~networks.nets.unet.AttentionUNet`: no block after the stages, and each skip is gated by
    the feature one level deeper (the decoder stage's input) before the concatenation.

    Every spatial size of the input must be divisible by ``2 ** (L - 1)``. Slice-sized blocks need
    ``patch_size``: the blocks of level ``i`` are built for ``patch_size[slice_axis] // 2**i`` slices
    and the network only accepts inputs of that depth. Blocks registered with ``vnet_options`` (``"pam"``,
    ``"scse"`` and ``"csse"``: the paper's VNet reductions ``r_D = 8``, ``r_C = 4``) get those options unless
    ``attention_kwargs`` overrides them.

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369

    Example::

        >>> net = AttentionVNet(spatial_dims=3, in_channels=4, out_channels=3, patch_size=(64, 64, 32))
        >>> net(torch.rand(1, 4, 64, 64, 32)).shape
        torch.Size([1, 3, 64, 64, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        features: Sequence[int] = VNET_FEATURES,
        attention: str = "pam",
        patch_size: Sequence[int] | None = None,
        slice_axis: int = -1,
        act: str | tuple = ("prelu", {}),
        norm: str | tuple = ("batch", {}),
        bias: bool = True,
        num_convs: Sequence[int] | None = None,
        kernel_size: int = 5,
        attention_kwargs: dict | None = None,
        dropout: float = 0.0,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3. Defaults to 3.
            in_channels: number of input channels. Defaults to 4 (BraTS modalities).
            out_channels: number of output channels (logits). Defaults to 3.
            features: channels per level, the last one the bottleneck; at least two levels. Defaults to
                ``(16, 32, 64, 128, 256)``.
            attention: registered attention block name. Defaults to ``"pam"``.
            patch_size: spatial size of the training patch; required by slice-sized attention
                (``"pam"``, ``"scse"``, ``"csse"``), whose depth ``patch_size[slice_axis]`` must be
                divisible by ``2 ** (len(features) - 1)``.
            slice_axis: index of the slice axis among the spatial dims. Defaults to -1 (Z of MONAI's
                ``(B, C, X, Y, Z)``).
            act: activation type and arguments. Defaults to PReLU with one slope per channel.
            norm: normalisation type and arguments. Defaults to batch norm (the original VNet's; instance
                norm fails on the 1-voxel bottleneck of small patches).
            bias: whether the convolutions have a bias. Defaults to True.
            num_convs: conv units of the residual stage per level (the decoder stage of level ``i`` uses
                ``num_convs[i]``); one entry per level. Defaults to ``min(i + 1, 3)`` for level ``i``, i.e.
                ``(1, 2, 3, 3, 3)`` for five levels.
            kernel_size: odd kernel size of the residual stages' convs. Defaults to 5.
            attention_kwargs: options of the attention block, e.g. ``{"slice_reduction": 8,
                "channel_reduction": 4, "pool": "avg"}`` for ``"pam"`` or ``{"inter_channels": 8}`` for ``"ag"``.
            dropout: dropout ratio after each conv unit. Defaults to no dropout.

        Raises:
            ValueError: on an unsupported ``spatial_dims``, fewer than two ``features``, ``num_convs`` not
                matching ``features``, an even ``kernel_size``, an unknown ``attention``, a ``patch_size`` of
                the wrong length, or a missing or indivisible ``patch_size`` for slice-sized attention.
        """
        features = tuple(int(f) for f in features)
        levels = len(features)
        if num_convs is None:
            num_convs = [min(i + 1, 3) for i in range(levels)]
        num_convs = tuple(int(n) for n in num_convs)
        if len(num_convs) != levels or min(num_convs) < 1:
            raise ValueError(
                f"num_convs must hold one positive number per level ({levels} for features={features}), "
                f"got num_convs={num_convs}."
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got kernel_size={kernel_size}.")
        super().__init__(
            spatial_dims, in_channels, out_channels, features, attention, patch_size, slice_axis, dropout,
            divisible_input=True,
        )
        spec = get_attention_spec(attention)
        gate_options = dict(attention_kwargs or {})
        options = {**spec.vnet_options, **gate_options}
        drop = dropout if dropout > 0 else None

        def make_attention(channels: int, level: int) -> nn.Module:
            if level == levels - 1 and spec.vnet_bottleneck == "se":
                r = int(options.get("channel_reduction", 8))
                return get_attention_block("se", spatial_dims, channels, r=r)
            return self.level_attention(channels, level, options)

        def stage(c_in: int, c_out: int, level: int) -> _ResidualStage:
            return _ResidualStage(
                spatial_dims, c_in, c_out, num_convs[level], kernel_size, act, norm, bias, dropout
            )

        def resample(c_in: int, c_out: int, transposed: bool) -> Convolution:
            return Convolution(
                spatial_dims,
                c_in,
                c_out,
                strides=2,
                kernel_size=2,
                adn_ordering="NDA",
                act=_act_spec(act, c_out),
                norm=norm,
                dropout=drop,
                bias=bias,
                is_transposed=transposed,
                padding=0,
                output_padding=0 if transposed else None,
            )

        encoder = []
        c_in = in_channels
        for level, c_out in enumerate(features):
            down = nn.Identity() if level == 0 else resample(c_in, c_out, transposed=False)
            encoder.append(
                EncoderLevel(down, stage(c_out if level else c_in, c_out, level), make_attention(c_out, level))
            )
            c_in = c_out
        self.encoder = nn.ModuleList(encoder)

        decoder = []
        for level in range(levels - 2, -1, -1):
            width = 2 * features[level]
            gate = get_skip_gate(attention, spatial_dims, features[level], c_in, **gate_options)
            up = resample(c_in, features[level], transposed=True)
            decoder.append(
                DecoderLevel(up, stage(width, width, level), make_attention(width, level), gate, skip_first=False)
            )
            c_in = width
        self.decoder = nn.ModuleList(decoder)

        self.head = Conv["conv", spatial_dims](c_in, out_channels, kernel_size=1)
