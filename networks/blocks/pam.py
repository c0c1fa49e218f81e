"""Progressive Attention Module (PAM): slice attention, key-slice selection and channel attention.

Re-implementation of the module described in:

    "Progressive attention module for segmentation of volumetric medical images",
    Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369

Differences from the original code (each one a bug there):

- key-slice selection runs per sample; the original selected slices from batch element 0 only;
- the channel descriptor stays in the autograd graph; the original detached it through numpy.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from monai.networks.layers.factories import Act

from .checks import (
    check_block_input,
    check_positive,
    check_spatial_dims,
    normalise_slice_axis,
)

__all__ = [
    "SliceAttention",
    "key_slice_mask",
    "ChannelAttention",
    "ProgressiveAttention",
    "key_slice_descriptor",
    "pool_over",
]

_POOL_TYPES = ("avg", "max", "avgmax")


def pool_over(x: torch.Tensor, dims: list[int], kind: str = "avg") -> torch.Tensor:
    """Mean (``kind="avg"``) or maximum (``"max"``) of ``x`` over the spatial ``dims``, the kept dims in order.

    Same result as ``torch.mean(x, dim=dims)`` / ``torch.amax(x, dim=dims)``, but a channels-last input
    (``torch.channels_last`` / ``torch.channels_last_3d``, as windows of
    :class:`pipelines.inferers.FastSlidingWindowInferer` are) is reduced through its channels-last view, where
    the reduced dims are the outer ones: PyTorch's CPU reduction over in-plane dims of a channels-last tensor
    is several times slower than over the same dims of a contiguous one.

    Args:
        x: tensor ``(B, C, *spatial)``.
        dims: dims to reduce, each ``>= 2`` (spatial), ascending.
        kind: ``"avg"`` or ``"max"``.
    """
    if x.ndim in (4, 5) and not x.is_contiguous():
        layout = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=layout):
            order = [0] + list(range(2, x.ndim)) + [1]  # (B, *spatial, C), contiguous
            moved = x.permute(order)
            reduce = [d - 1 for d in dims]
            pooled = torch.mean(moved, dim=reduce) if kind == "avg" else torch.amax(moved, dim=reduce)
            return pooled.movedim(-1, 1)  # (B, C, *kept spatial)
    return torch.mean(x, dim=dims) if kind == "avg" else torch.amax(x, dim=dims)


class SliceAttention(nn.Module):
    """Slice attention (SA) of PAM: one small MLP per channel re-weights the slices of that channel.

    For every channel ``c`` the feature map is pooled over the in-plane dims to a vector of length
    ``D`` (the number of slices), passed through the channel's own MLP
    ``Linear(D -> max(1, D // reduction)), ReLU, Linear(-> D)`` and a sigmoid, giving slice weights
    ``s_c`` of shape ``(D,)``; the output is ``x[:, c] * s_c`` broadcast over the in-plane dims
    (no residual). The ``C`` MLPs are stored as stacked parameter tensors and evaluated together
    with ``einsum``, so parameters grow with ``C`` while no Python loop over channels is run.

    Because the MLP is sized by ``D`` the block only accepts inputs with exactly ``num_slices``
    slices along ``slice_axis``.

    ``slice_axis`` indexes the spatial dims. MONAI loads NIfTI volumes as ``(B, C, X, Y, Z)``, so the
    default ``-1`` (Z) is the axial slice axis; ``slice_axis=0`` reproduces the paper's
    ``(B, C, D, H, W)`` layout. With ``spatial_dims=2`` the "slices" are the rows (or columns)
    along ``slice_axis`` and pooling runs over the other axis.

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369

    Example::

        >>> sa = SliceAttention(spatial_dims=3, channels=16, num_slices=32)
        >>> sa(torch.rand(2, 16, 48, 48, 32)).shape
        torch.Size([2, 16, 48, 48, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_slices: int,
        reduction: int = 16,
        pool: str = "avg",
        slice_axis: int = -1,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of input channels ``C``; each gets its own MLP.
            num_slices: number of slices ``D`` along ``slice_axis`` the block is built for.
            reduction: slice reduction ratio ``r_D``; the hidden size is ``max(1, D // r_D)``. Defaults to 16.
            pool: in-plane pooling, ``"avg"`` (default), ``"max"`` or ``"avgmax"`` (average- and
                max-pooled vectors through the same MLP, summed before the sigmoid).
            slice_axis: index of the slice axis among the spatial dims (negative allowed). Defaults
                to -1, the last spatial dim.

        Raises:
            ValueError: when ``spatial_dims`` is not 2 or 3, ``channels``, ``num_slices`` or
                ``reduction`` is not positive, ``pool`` is unknown or ``slice_axis`` is out of range.
        """
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        check_positive(channels=channels, num_slices=num_slices, reduction=reduction)
        if pool not in _POOL_TYPES:
            raise ValueError(f"pool must be one of {_POOL_TYPES}, got pool={pool!r}.")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.num_slices = num_slices
        self.reduction = reduction
        self.pool = pool
        self.slice_axis = slice_axis
        axis = normalise_slice_axis(slice_axis, spatial_dims)
        self._slice_dim: int = 2 + axis
        self._inplane_dims: list[int] = [2 + i for i in range(spatial_dims) if i != axis]
        self.hidden = max(1, num_slices // reduction)

        # channel c maps v (D,) -> relu(v @ weight1[c] + bias1[c]) @ weight2[c] + bias2[c]
        self.weight1 = nn.Parameter(torch.empty(channels, num_slices, self.hidden))
        self.bias1 = nn.Parameter(torch.empty(channels, self.hidden))
        self.weight2 = nn.Parameter(torch.empty(channels, self.hidden, num_slices))
        self.bias2 = nn.Parameter(torch.empty(channels, num_slices))
        self.act = Act["relu"]()
        self.gate = Act["sigmoid"]()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every channel's MLP like ``nn.Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        bound1 = 1.0 / math.sqrt(self.num_slices)
        bound2 = 1.0 / math.sqrt(self.hidden)
        nn.init.uniform_(self.weight1, -bound1, bound1)
        nn.init.uniform_(self.bias1, -bound1, bound1)
        nn.init.uniform_(self.weight2, -bound2, bound2)
        nn.init.uniform_(self.bias2, -bound2, bound2)

    def _mlp(self, v: torch.Tensor) -> torch.Tensor:
        """Apply every channel's MLP (without the sigmoid): ``(B, C, D) -> (B, C, D)``."""
        h = self.act(torch.einsum("bcd,cdh->bch", v, self.weight1) + self.bias1)
        return torch.einsum("bch,chd->bcd", h, self.weight2) + self.bias2

    def _check_input(self, x: torch.Tensor) -> None:
        check_block_input(x, "SliceAttention", self.channels, self.spatial_dims)
        depth = x.shape[self._slice_dim]
        if depth != self.num_slices:
            raise ValueError(
                f"SliceAttention built for num_slices={self.num_slices} along slice axis {self.slice_axis} "
                f"but got depth {depth} (input shape {list(x.shape)}); the slice MLP is sized by the depth, "
                "so feed patches of the depth the network was built for (e.g. sliding-window inference "
                "with a fixed roi_size)."
            )

    def slice_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Slice weights ``s`` in (0, 1).

        Args:
            x: input of shape ``(B, C, *spatial)`` with ``num_slices`` slices along ``slice_axis``.

        Returns:
            weights of shape ``(B, C, D)``.

        Raises:
            ValueError: when the shape or the depth of ``x`` does not match the block.
        """
        self._check_input(x)
        mean = pool_over(x, self._inplane_dims, "avg") if self.pool != "max" else None
        return self.weights_from_pooled(x, mean)

    def weights_from_pooled(self, x: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        """Slice weights ``(B, C, D)`` from the in-plane mean ``mean`` ``(B, C, D)`` of ``x`` (computed by the
        caller, who may need it too; unused with ``pool="max"``), pooling the maximum of ``x`` here if needed."""
        if self.pool == "avg":
            assert mean is not None
            logits = self._mlp(mean)
        elif self.pool == "max":
            logits = self._mlp(pool_over(x, self._inplane_dims, "max"))
        else:
            assert mean is not None
            logits = self._mlp(mean) + self._mlp(pool_over(x, self._inplane_dims, "max"))
        return self.gate(logits)

    def apply_weights(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Multiply ``x`` of shape ``(B, C, *spatial)`` by ``weights`` ``(B, C, D)`` along the slice axis."""
        shape = [weights.shape[0], weights.shape[1]] + [1] * self.spatial_dims
        shape[self._slice_dim] = weights.shape[2]
        return x * weights.view(shape)

    def forward_with_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: input of shape ``(B, C, *spatial)``.

        Returns:
            ``(x * s, s)``: the re-weighted input, same shape as ``x``, and the slice weights ``(B, C, D)``.
        """
        weights = self.slice_weights(x)
        return self.apply_weights(x, weights), weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input of shape ``(B, C, *spatial)`` with ``num_slices`` slices along ``slice_axis``.

        Returns:
            the slice-weighted input, same shape as ``x``.
        """
        return self.apply_weights(x, self.slice_weights(x))


def key_slice_mask(weights: torch.Tensor) -> torch.Tensor:
    """Key-slice selection (KSS) of PAM.

    For every sample and channel the slice weights are soft-maxed over the slices and slice ``j``
    is kept when ``softmax_j >= 1 / D`` (the mean of the softmax). A relative tolerance of 1e-6
    absorbs rounding, so equal weights keep every slice; the slice of largest weight is always kept.
    Selection is computed per sample (the original used batch element 0 for the whole batch) and
    carries no gradient.

    Args:
        weights: slice weights of shape ``(B, C, D)``.

    Returns:
        boolean mask of shape ``(B, C, D)``, at least one ``True`` per ``(b, c)``.

    Raises:
        ValueError: when ``weights`` is not 3-D or has no slices.
    """
    if weights.ndim != 3 or weights.shape[-1] < 1:
        raise ValueError(f"key_slice_mask expects slice weights of shape (B, C, D), got shape {list(weights.shape)}.")
    with torch.no_grad():
        depth = weights.shape[-1]
        prob = torch.softmax(weights.detach().float(), dim=-1)
        mask = prob * depth >= 1.0 - 1e-6
        top = torch.argmax(prob, dim=-1, keepdim=True)
        mask = mask.scatter(-1, top, torch.ones_like(top, dtype=torch.bool))
    return mask


def key_slice_descriptor(per_slice: torch.Tensor, slice_mask: torch.Tensor) -> torch.Tensor:
    """Channel descriptor of PAM's channel attention from the in-plane means ``(B, C, D)`` of every slice: their
    mean over the slices of the key-slice mask ``(B, C, D)`` (every slice has the same in-plane size), ``(B, C)``."""
    weight = slice_mask.to(per_slice.dtype)
    return (per_slice * weight).sum(-1) / weight.sum(-1).clamp_min(1.0)


class ChannelAttention(nn.Module):
    """Channel attention (CA) of PAM, squeezing each channel over its key slices only.

    The descriptor ``z_c`` is the mean of ``x[:, c]`` over the selected slices (all in-plane
    positions), or over the whole volume when no mask is given; then
    ``Linear(C -> max(1, C // reduction)), ReLU, Linear(-> C), sigmoid`` gives ``w`` and the output
    is ``x * w`` (no residual). The descriptor is differentiable (the original detached it).

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 8, slice_axis: int = -1) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions, 2 or 3.
            channels: number of input channels ``C``.
            reduction: channel reduction ratio ``r_C``; the hidden size is ``max(1, C // r_C)``. Defaults to 8.
            slice_axis: index among the spatial dims of the axis ``slice_mask`` refers to. Defaults to -1.

        Raises:
            ValueError: when ``spatial_dims`` is not 2 or 3, ``channels`` or ``reduction`` is not
                positive or ``slice_axis`` is out of range.
        """
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        check_positive(channels=channels, reduction=reduction)
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.reduction = reduction
        self.slice_axis = slice_axis
        axis = normalise_slice_axis(slice_axis, spatial_dims)
        self._slice_dim: int = 2 + axis
        self._inplane_dims: list[int] = [2 + i for i in range(spatial_dims) if i != axis]
        self._spatial: list[int] = [2 + i for i in range(spatial_dims)]
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), Act["relu"](), nn.Linear(hidden, channels), Act["sigmoid"]()
        )

    def descriptor(self, x: torch.Tensor, slice_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Channel descriptor ``z``.

        Args:
            x: input of shape ``(B, C, *spatial)``.
            slice_mask: optional boolean key-slice mask ``(B, C, D)`` along ``slice_axis``.

        Returns:
            ``z`` of shape ``(B, C)``.

        Raises:
            ValueError: when ``slice_mask`` does not match ``x``.
        """
        if slice_mask is None:
            return pool_over(x, self._spatial, "avg")
        expected = [x.shape[0], x.shape[1], x.shape[self._slice_dim]]
        if list(slice_mask.shape) != expected:
            raise ValueError(
                f"slice_mask must have shape (B, C, D)={expected} for input shape {list(x.shape)}, "
                f"got {list(slice_mask.shape)}."
            )
        return key_slice_descriptor(pool_over(x, self._inplane_dims, "avg"), slice_mask)

    def channel_weights(self, z: torch.Tensor) -> torch.Tensor:
        """Channel weights ``(B, C)`` in (0, 1) from the descriptor ``z`` ``(B, C)``."""
        return self.fc(z)

    def forward(self, x: torch.Tensor, slice_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            x: input of shape ``(B, C, *spatial)``.
            slice_mask: optional boolean key-slice mask ``(B, C, D)``; ``None`` squeezes over the whole volume.

        Returns:
            ``x * w`` with channel weights ``w`` in (0, 1), same shape as ``x``.
        """
        check_block_input(x, "ChannelAttention", self.channels, self.spatial_dims)
        w = self.channel_weights(self.descriptor(x, slice_mask))
        return x * w.view([w.shape[0], w.shape[1]] + [1] * self.spatial_dims)


class ProgressiveAttention(nn.Module):
    """Progressive Attention Module (PAM): slice attention -> key-slice selection -> channel attention.

    ``x~ = SA(x)`` re-weights the slices of every channel, ``key_slice_mask`` picks each sample's
    and channel's key slices from the slice weights (no gradient), and channel attention squeezes
    ``x~`` over those slices only and re-weights the channels. There is no residual connection.

    The slice reduction ``r_D`` is clamped to ``num_slices`` so that ``D // r_D >= 1`` at deep levels.

    Paper: Medical Physics 49(1):295-308, 2022, https://doi.org/10.1002/mp.15369

    Example::

        >>> pam = ProgressiveAttention(spatial_dims=3, channels=32, num_slices=16)
        >>> pam(torch.rand(2, 32, 24, 24, 16)).shape
        torch.Size([2, 32, 24, 24, 16])
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
            channels: number of input channels ``C``.
            num_slices: number of slices ``D`` along ``slice_axis`` the block is built for.
            slice_reduction: slice reduction ratio ``r_D``, clamped to ``num_slices``. Defaults to 16.
            channel_reduction: channel reduction ratio ``r_C``. Defaults to 8.
            pool: in-plane pooling of slice attention: ``"avg"``, ``"max"`` or ``"avgmax"``.
            slice_axis: index of the slice axis among the spatial dims. Defaults to -1 (Z of MONAI's
                ``(B, C, X, Y, Z)``); 0 gives the paper's ``(B, C, D, H, W)``.

        Raises:
            ValueError: on invalid arguments (see :class:`SliceAttention` and :class:`ChannelAttention`).
        """
        super().__init__()
        check_positive(num_slices=num_slices, slice_reduction=slice_reduction)
        self.slice_reduction = min(slice_reduction, num_slices)
        self.slice_attention = SliceAttention(
            spatial_dims, channels, num_slices, reduction=self.slice_reduction, pool=pool, slice_axis=slice_axis
        )
        self.channel_attention = ChannelAttention(
            spatial_dims, channels, reduction=channel_reduction, slice_axis=slice_axis
        )

    def forward_with_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            x: input of shape ``(B, C, *spatial)`` with ``num_slices`` slices along ``slice_axis``.

        Returns:
            ``(out, weights, mask)``: the output (same shape as ``x``), the slice weights ``(B, C, D)``
            and the boolean key-slice mask ``(B, C, D)``.
        """
        sa, ca = self.slice_attention, self.channel_attention
        sa._check_input(x)
        # One pass over x for the in-plane means v (B, C, D) and one for the output. Since x~ = x * s is constant
        # in-plane per slice, the in-plane means of x~ are s * v, so the channel descriptor needs no pass over x~,
        # and the two multiplications x * s * w are one: out = x * (s w). Equal to SA then CA up to rounding.
        means = pool_over(x, sa._inplane_dims, "avg")
        weights = sa.weights_from_pooled(x, means)
        mask = key_slice_mask(weights)
        w = ca.channel_weights(key_slice_descriptor(weights * means, mask))  # (B, C)
        return sa.apply_weights(x, weights * w.unsqueeze(-1)), weights, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: input of shape ``(B, C, *spatial)`` with ``num_slices`` slices along ``slice_axis``.

        Returns:
            the attended features, same shape as ``x``.

        Raises:
            ValueError: when the depth of ``x`` along ``slice_axis`` is not ``num_slices``.
        """
        return self.forward_with_mask(x)[0]
