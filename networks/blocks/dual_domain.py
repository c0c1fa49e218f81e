"""Dual-Domain block: a spatial and a frequency branch over the same features, concatenated and fused.

The bottleneck block of the joint segmentation + classification network (:mod:`networks.nets.joint_segcls`),
after the BUSI thesis code "Dual_Aug_Net" (Nimalesh, Thesis_Phase_2):

- spatial branch: 1x1 conv -> BN -> ReLU;
- frequency branch: ``rfftn`` over the spatial dims (``norm="ortho"``), magnitude scaled, phase kept, ``irfftn``
  back to the input's size, then 1x1 conv -> BN -> ReLU;
- ``concat([spatial, frequency])`` -> 1x1 fuse conv (with bias) back to ``channels``.

Scaling the magnitude by a real weight ``w >= 0`` and keeping the phase is ``polar(w |X|, angle(X)) = w X``, so
the branch multiplies the spectrum by ``w`` directly: the same result, without ``angle``'s undefined gradient where
``|X| = 0`` (e.g. an all-zero channel after a ReLU). Because the Fourier transform is linear, a weight that is
constant over the frequencies (the seed's fixed ``x1.1``, or a learnable per-channel weight) makes the frequency
branch equal to ``w * x`` before its 1x1 conv; only a frequency-dependent weight would filter the features.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv

from networks.blocks.checks import check_block_input, check_positive, check_spatial_dims

__all__ = ["SPECTRAL_WEIGHTS", "DualDomainBlock"]

#: ``"fixed"``: one constant scale (the seed's ``x1.1``); ``"channel"``: a learnable weight per channel,
#: initialised to the scale.
SPECTRAL_WEIGHTS = ("fixed", "channel")


class DualDomainBlock(nn.Module):
    """Spatial (1x1 conv-BN-ReLU) and frequency (scaled spectrum, 1x1 conv-BN-ReLU) branches, fused by a 1x1 conv.

    The FFT runs in float32 (also under autocast) and its result is cast back to the input's dtype.

    Example::

        >>> block = DualDomainBlock(spatial_dims=2, channels=320)
        >>> block(torch.rand(2, 320, 8, 8)).shape
        torch.Size([2, 320, 8, 8])

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3 (the FFT runs over all of them).
        channels: number of input and output channels ``C``.
        spectral_scale: the magnitude scale (``"fixed"``) or the initial per-channel weight (``"channel"``).
            Defaults to 1.1 (the seed).
        spectral_weight: one of :data:`SPECTRAL_WEIGHTS`. Defaults to ``"fixed"``.
        use_spatial: build the spatial branch. Defaults to True.
        use_frequency: build the frequency branch. Defaults to True.
        norm: norm of the branches' conv blocks (MONAI factory name/args). Defaults to ``"batch"``.
        act: activation of the branches' conv blocks. Defaults to ``"relu"``.

    Raises:
        ValueError: ``spatial_dims`` not 2 or 3, ``channels`` not positive, unknown ``spectral_weight``, or both
            branches switched off.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        spectral_scale: float = 1.1,
        spectral_weight: str = "fixed",
        use_spatial: bool = True,
        use_frequency: bool = True,
        norm: str | tuple = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        check_positive(channels=channels)
        if spectral_weight not in SPECTRAL_WEIGHTS:
            raise ValueError(f"unknown spectral_weight {spectral_weight!r}; available: {list(SPECTRAL_WEIGHTS)}.")
        if not (use_spatial or use_frequency):
            raise ValueError("DualDomainBlock needs at least one branch; got use_spatial=False, use_frequency=False.")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.use_spatial = use_spatial
        self.use_frequency = use_frequency
        self.learnable = spectral_weight == "channel"
        self.spectral_scale = float(spectral_scale)
        self._fft_dims = [2 + i for i in range(spatial_dims)]

        def conv_block() -> nn.Module:
            return Convolution(
                spatial_dims, channels, channels, kernel_size=1, act=act, norm=norm, bias=False, adn_ordering="NA"
            )

        self.spatial = conv_block() if use_spatial else nn.Identity()
        self.frequency = conv_block() if use_frequency else nn.Identity()
        if self.learnable:
            self.spectral_weight = nn.Parameter(torch.full((channels,), self.spectral_scale))
        else:
            self.register_buffer("spectral_weight", torch.full((channels,), self.spectral_scale), persistent=False)
        self.fuse = Conv["conv", spatial_dims](channels * (int(use_spatial) + int(use_frequency)), channels, 1)

    def spectral(self, x: torch.Tensor) -> torch.Tensor:
        """The frequency branch before its conv block: ``irfftn(w * rfftn(x))`` (ortho), same shape and dtype as ``x``.

        Args:
            x: features ``(B, C, *spatial)``.
        """
        xf = x.float()
        spectrum = torch.fft.rfftn(xf, dim=self._fft_dims, norm="ortho")
        w = self.spectral_weight.float().view([1, self.channels] + [1] * self.spatial_dims)
        out = torch.fft.irfftn(spectrum * w, s=xf.shape[2:], dim=self._fft_dims, norm="ortho")
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: features ``(B, C, *spatial)``.

        Returns:
            the fused features, same shape as ``x``.

        Raises:
            ValueError: when ``x`` does not have ``channels`` channels and ``spatial_dims`` spatial dims.
        """
        check_block_input(x, "DualDomainBlock", self.channels, self.spatial_dims)
        branches: list[torch.Tensor] = []
        if self.use_spatial:
            branches.append(self.spatial(x))
        if self.use_frequency:
            branches.append(self.frequency(self.spectral(x)))
        return self.fuse(torch.cat(branches, dim=1))
