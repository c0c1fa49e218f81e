"""What :class:`~networks.nets.unet.AttentionUNet` and :class:`~networks.nets.vnet.AttentionVNet` share: the
argument and input checks, the per-level attention from the attention registry, the encoder and decoder level
modules and the forward loop. A backbone subclasses :class:`AttentionEncoderDecoder` and only builds its levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.blocks.attention import (
    get_attention_block,
    get_attention_spec,
    list_attention_blocks,
    resolve_patch_depth,
)
from networks.blocks.attention_gate import SkipPassThrough
from networks.blocks.checks import check_spatial_dims, normalise_slice_axis

__all__ = ["AttentionEncoderDecoder", "DecoderLevel", "EncoderLevel", "segmentation_test_config"]


def segmentation_test_config(**kwargs) -> dict:
    """The registry test configuration of an encoder-decoder backbone: tiny widths ``(4, 8, 16)`` (plus ``kwargs``),
    a 3D and a 2D case, every registered attention block swept (see :mod:`networks.registry`)."""
    cases = []
    for size in ((16, 12, 8), (16, 12)):
        case_kwargs = {"spatial_dims": len(size), "patch_size": size}
        cases.append({"kwargs": case_kwargs, "input": (2, 2, *size), "output": (2, 3, *size)})
    return {
        "kwargs": {"in_channels": 2, "out_channels": 3, "features": (4, 8, 16), **kwargs},
        "cases": cases,
        "sweep": {"attention": list_attention_blocks},
    }


class EncoderLevel(nn.Module):
    """``attention(convs(down(x)))``: [downsampling ->] the level's convolutions -> its attention block."""

    def __init__(self, down: nn.Module, convs: nn.Module, attention: nn.Module) -> None:
        super().__init__()
        self.down = down
        self.convs = convs
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.convs(self.down(x)))


class DecoderLevel(nn.Module):
    """Gate the skip with ``x`` -> upsample ``x`` -> concatenate with the skip -> convolutions -> attention.

    ``up`` upsamples ``x`` (a transposed conv, or the identity); with a non-empty interpolation ``mode`` the result
    is then interpolated to the skip's size. ``skip_first`` puts the skip before the upsampled ``x`` in the
    concatenation. ``gate`` (default: pass-through) is called as ``gate(skip, x)``.
    """

    def __init__(
        self,
        up: nn.Module,
        convs: nn.Module,
        attention: nn.Module,
        gate: nn.Module | None = None,
        mode: str = "",
        align_corners: bool | None = None,
        skip_first: bool = True,
    ) -> None:
        super().__init__()
        self.up = up
        self.convs = convs
        self.attention = attention
        self.gate = SkipPassThrough() if gate is None else gate
        self.mode = mode
        self.align_corners = align_corners
        self.skip_first = skip_first

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        skip = self.gate(skip, x)
        up = self.up(x)
        if self.mode != "":
            up = F.interpolate(up, size=skip.shape[2:], mode=self.mode, align_corners=self.align_corners)
        cat = torch.cat([skip, up], dim=1) if self.skip_first else torch.cat([up, skip], dim=1)
        return self.attention(self.convs(cat))


class AttentionEncoderDecoder(nn.Module):
    """Base of the encoder-decoder segmentation networks with an attention block per level.

    The constructor checks the shared arguments and sets the attributes the forward pass uses; the subclass then
    fills ``self.encoder`` (:class:`EncoderLevel` s, the last one the bottleneck), ``self.decoder``
    (:class:`DecoderLevel` s, deepest first) and ``self.head``, building each level's block with
    :meth:`level_attention` and each skip gate with :func:`~networks.blocks.attention_gate.get_skip_gate`.
    TorchScript-able: ``forward`` only uses typed attributes.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        attention: str,
        patch_size: Sequence[int] | None,
        slice_axis: int,
        dropout: float,
        divisible_input: bool,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            in_channels: number of input channels.
            out_channels: number of output channels (logits).
            features: channels per level, at least two levels.
            attention: registered attention block name.
            patch_size: spatial size of the training patch; required by slice-sized attention.
            slice_axis: index of the slice axis among the spatial dims.
            dropout: dropout ratio in [0, 1).
            divisible_input: whether inputs must have every spatial size divisible by ``2 ** (len(features) - 1)``.

        Raises:
            ValueError: on an unsupported ``spatial_dims``, fewer than two ``features``, a bad ``dropout``, an
                unknown ``attention``, a ``slice_axis`` out of range, a ``patch_size`` of the wrong length, or a
                missing or indivisible ``patch_size`` for slice-sized attention.
        """
        super().__init__()
        name = type(self).__name__
        check_spatial_dims(spatial_dims, name)
        features = tuple(int(f) for f in features)
        if len(features) < 2 or min(features) < 1:
            raise ValueError(f"features must hold at least two positive channel numbers, got features={features}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got dropout={dropout}.")
        axis = normalise_slice_axis(slice_axis, spatial_dims)
        get_attention_spec(attention)  # unknown names fail here
        patch_size, depth = resolve_patch_depth(attention, patch_size, spatial_dims, slice_axis, len(features))

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.attention = attention
        self.patch_size = patch_size
        self.slice_axis = slice_axis
        self._name: str = name
        self._size_divisor: int = 2 ** (len(features) - 1) if divisible_input else 1
        self._slice_dim: int = 2 + axis
        self._expected_depth: int = depth
        self._patch_desc: str = (
            f"{name}(attention={attention!r}) was built for patch_size={patch_size} "
            f"(depth {depth} along slice axis {slice_axis})"
        )

    def level_attention(self, channels: int, level: int, options: dict) -> nn.Module:
        """The attention block after a level with ``channels`` channels at depth ``level`` (0 = full resolution):
        slice-sized blocks get ``patch_size[slice_axis] // 2**level`` slices."""
        num_slices = self._expected_depth // 2**level if self._expected_depth > 0 else None
        return get_attention_block(
            self.attention, self.spatial_dims, channels, num_slices=num_slices, slice_axis=self.slice_axis, **options
        )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when ``x`` has the wrong number of dims, an indivisible spatial size (if the network
        needs divisible sizes) or the wrong depth for slice-sized attention."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"{self._name}(spatial_dims={self.spatial_dims}) expects input (B, C, *spatial) with "
                f"{self.spatial_dims + 2} dims, got shape {list(x.shape)}."
            )
        if self._size_divisor > 1:
            for size in x.shape[2:]:
                if size % self._size_divisor != 0:
                    raise ValueError(
                        f"{self._name} with {len(self.features)} levels needs every spatial size divisible by "
                        f"{self._size_divisor}, got input shape {list(x.shape)}."
                    )
        if self._expected_depth > 0 and x.shape[self._slice_dim] != self._expected_depth:
            raise ValueError(
                f"{self._patch_desc} but got depth {x.shape[self._slice_dim]} (input shape {list(x.shape)}); "
                "feed patches of patch_size, e.g. sliding-window inference with roi_size=patch_size."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input of shape ``(B, in_channels, *spatial)``; with slice-sized attention its depth along
                ``slice_axis`` must be ``patch_size[slice_axis]``.

        Returns:
            logits of shape ``(B, out_channels, *spatial)``.

        Raises:
            ValueError: see :meth:`check_input`.
        """
        self.check_input(x)
        skips: list[torch.Tensor] = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        for i, level in enumerate(self.decoder):
            x = level(x, skips[-2 - i])
        return self.head(x)
