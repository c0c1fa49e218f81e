"""Attention blocks chosen by name, so networks and bundles select them by config.

A builder is registered with :func:`register_attention` and called as
``builder(spatial_dims, channels, num_slices, slice_axis, **kwargs)``; it returns an
``nn.Module`` that maps ``(B, channels, *spatial)`` to the same shape. Blocks whose parameters
depend on the number of slices (slice attention) are registered with ``needs_slices=True``;
networks then require a patch size so they can pass ``num_slices`` per level.

Example::

    >>> block = get_attention_block("pam", spatial_dims=3, channels=32, num_slices=16)
    >>> block = get_attention_block("se", spatial_dims=2, channels=32)

    >>> @register_attention("my_block")
    ... def _build_my_block(spatial_dims, channels, num_slices=None, slice_axis=-1, **kwargs):
    ...     return MyBlock(spatial_dims, channels, **kwargs)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch.nn as nn

from monai.networks.blocks import ChannelSELayer

from .pam import ProgressiveAttention

__all__ = [
    "resolve_patch_depth",
    "ATTENTION_BLOCKS",
    "attention_needs_slices",
    "get_attention_block",
    "list_attention_blocks",
    "register_attention",
]

AttentionBuilder = Callable[..., nn.Module]

ATTENTION_BLOCKS: dict[str, AttentionBuilder] = {}
"""Registered attention builders, by name."""

_NEEDS_SLICES: set[str] = set()


def register_attention(name: str, needs_slices: bool = False) -> Callable[[AttentionBuilder], AttentionBuilder]:
    """Decorator registering an attention builder under ``name``.

    Args:
        name: the name used by :func:`get_attention_block` and the networks' ``attention`` argument.
        needs_slices: whether the block is sized by the number of slices (then ``num_slices`` is
            required when building it).

    Returns:
        a decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: when ``name`` is already registered.
    """
    key = name.lower()

    def decorator(builder: AttentionBuilder) -> AttentionBuilder:
        if key in ATTENTION_BLOCKS:
            raise ValueError(f"attention block {name!r} is already registered (by {ATTENTION_BLOCKS[key]!r}).")
        ATTENTION_BLOCKS[key] = builder
        if needs_slices:
            _NEEDS_SLICES.add(key)
        return builder

    return decorator


def list_attention_blocks() -> list[str]:
    """Sorted names of the registered attention blocks."""
    return sorted(ATTENTION_BLOCKS)


def _lookup(name: str) -> str:
    key = name.lower() if isinstance(name, str) else name
    if key not in ATTENTION_BLOCKS:
        raise ValueError(f"unknown attention block {name!r}; available: {list_attention_blocks()}.")
    return key


def attention_needs_slices(name: str) -> bool:
    """Whether the attention block ``name`` needs ``num_slices`` (i.e. a fixed patch depth).

    Raises:
        ValueError: when ``name`` is not registered.
    """
    return _lookup(name) in _NEEDS_SLICES


def get_attention_block(
    name: str, spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1, **kwargs
) -> nn.Module:
    """Build the attention block registered as ``name``.

    Args:
        name: a registered name (case-insensitive), see :func:`list_attention_blocks`.
        spatial_dims: number of spatial dimensions.
        channels: number of channels of the features the block attends to.
        num_slices: number of slices along ``slice_axis``; required by slice-sized blocks such as ``"pam"``.
        slice_axis: index of the slice axis among the spatial dims. Defaults to -1.
        kwargs: block-specific options, e.g. ``slice_reduction``, ``channel_reduction``, ``pool``
            for ``"pam"`` and ``r`` for ``"se"``.

    Returns:
        a module mapping ``(B, channels, *spatial)`` to the same shape.

    Raises:
        ValueError: when ``name`` is unknown, ``kwargs`` holds an option the block does not take, or
            ``num_slices`` is missing for a slice-sized block.
    """
    key = _lookup(name)
    if key in _NEEDS_SLICES and num_slices is None:
        raise ValueError(f"attention block {name!r} is sized by the number of slices: pass num_slices.")
    builder = ATTENTION_BLOCKS[key]
    try:
        inspect.signature(builder).bind(spatial_dims, channels, num_slices=num_slices, slice_axis=slice_axis, **kwargs)
    except TypeError as err:
        raise ValueError(f"invalid options {sorted(kwargs)} for attention block {name!r}: {err}.") from err
    return builder(spatial_dims, channels, num_slices=num_slices, slice_axis=slice_axis, **kwargs)


@register_attention("none")
def _build_identity(spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1) -> nn.Module:
    """No attention."""
    return nn.Identity()


@register_attention("se")
def _build_se(
    spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1, r: int = 8
) -> nn.Module:
    """AnatomyNet-style squeeze-and-excitation: global pool, FC C -> C/r, ReLU, FC, sigmoid, multiply.

    MONAI's :class:`~monai.networks.blocks.ChannelSELayer`; ``r`` (default 8) is clamped to ``channels``
    so that narrow layers keep at least one hidden unit.
    """
    if r < 1:
        raise ValueError(f"r must be a positive integer, got r={r}.")
    return ChannelSELayer(spatial_dims, channels, r=min(r, channels))


@register_attention("pam", needs_slices=True)
def _build_pam(
    spatial_dims: int,
    channels: int,
    num_slices: int | None = None,
    slice_axis: int = -1,
    slice_reduction: int = 16,
    channel_reduction: int = 8,
    pool: str = "avg",
) -> nn.Module:
    """Progressive attention module, see :class:`~networks.blocks.pam.ProgressiveAttention`."""
    if num_slices is None:
        raise ValueError("attention 'pam' needs num_slices.")
    return ProgressiveAttention(
        spatial_dims,
        channels,
        num_slices,
        slice_reduction=slice_reduction,
        channel_reduction=channel_reduction,
        pool=pool,
        slice_axis=slice_axis,
    )


def resolve_patch_depth(
    attention: str, patch_size, spatial_dims: int, slice_axis: int, levels: int
) -> tuple[tuple[int, ...] | None, int]:
    """Check a network's ``patch_size`` for its attention and return ``(patch_size, depth)``.

    Slice-sized attention (e.g. ``"pam"``) is built for the patch depth ``patch_size[slice_axis]``, halved at each
    of the ``levels - 1`` downsamplings, so the depth must be given and divisible by ``2 ** (levels - 1)``.

    Returns:
        the patch size as a tuple (or None) and the depth (-1 when the attention is not slice-sized).

    Raises:
        ValueError: naming the bad value, for a patch size of the wrong length, a missing patch size or an
            indivisible depth.
    """
    from networks.blocks.pam import _normalise_slice_axis

    axis = _normalise_slice_axis(slice_axis, spatial_dims)
    if patch_size is not None:
        patch_size = tuple(int(p) for p in patch_size)
        if len(patch_size) != spatial_dims:
            raise ValueError(f"patch_size must have spatial_dims={spatial_dims} entries, got patch_size={patch_size}.")
    if not attention_needs_slices(attention):
        return patch_size, -1
    if patch_size is None:
        raise ValueError(
            f"attention={attention!r} is sized by the patch depth: pass patch_size (the training "
            "patch / sliding-window roi size)."
        )
    depth = patch_size[axis]
    factor = 2 ** (levels - 1)
    if depth % factor != 0:
        raise ValueError(
            f"attention={attention!r} with {levels} levels needs patch_size[slice_axis={slice_axis}] "
            f"divisible by {factor}, got patch_size={patch_size}."
        )
    return patch_size, depth
