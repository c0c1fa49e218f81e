"""The registry of attention blocks: networks and bundles select a block by name.

Every block is registered once with :func:`register_attention`, which records an :class:`AttentionSpec`: the
builder and what the block needs from a network:

- ``needs_slices``: the block is sized by the number of slices (slice attention such as ``"pam"``); networks then
  require a patch size (:func:`resolve_patch_depth`) and pass ``num_slices`` per level;
- ``placement``: ``"level"`` (a block after every encoder/decoder level; the builder is called as
  ``builder(spatial_dims, channels, num_slices=..., slice_axis=..., **options)`` and returns a shape-preserving
  module) or ``"skip"`` (a gate on every skip connection; the builder is called as
  ``builder(spatial_dims, skip_channels, gate_channels, **options)`` and returns a module called as
  ``gate(skip, g)``; the per-level block is the identity);
- ``vnet_bottleneck``: what :class:`~networks.nets.vnet.AttentionVNet` places after its bottleneck, ``"block"``
  (the block itself) or ``"se"`` (channel squeeze-and-excitation with ``r = channel_reduction``, for slice-sized
  blocks whose bottleneck may be one slice deep);
- ``vnet_options``: default options of the block inside the VNet (the PAM paper's VNet reductions).

Registering a new block is one decorated builder; the networks query the registry, never a list of names.

Example::

    >>> block = get_attention_block("pam", spatial_dims=3, channels=32, num_slices=16)
    >>> block = get_attention_block("se", spatial_dims=2, channels=32)
    >>> get_attention_spec("ag").placement
    'skip'

    >>> @register_attention("my_block")
    ... def build_my_block(spatial_dims, channels, num_slices=None, slice_axis=-1, **kwargs):
    ...     return MyBlock(spatial_dims, channels, **kwargs)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch.nn as nn
from monai.networks.blocks import ChannelSELayer

from networks.registry import lookup

from .checks import normalise_slice_axis
from .pam import ProgressiveAttention

__all__ = [
    "ATTENTION_BLOCKS",
    "AttentionSpec",
    "attention_needs_slices",
    "get_attention_block",
    "get_attention_spec",
    "check_options",
    "is_skip_gate",
    "list_attention_blocks",
    "plain_block_builder",
    "register_attention",
    "resolve_patch_depth",
    "SLICE_BLOCK_VNET",
    "slice_block_builder",
]

AttentionBuilder = Callable[..., nn.Module]

PLACEMENTS = ("level", "skip")
VNET_BOTTLENECKS = ("block", "se")


@dataclass(frozen=True)
class AttentionSpec:
    """A registered attention block and what it needs from the network it is placed in.

    Attributes:
        name: registry name (lower case).
        builder: builds the module, see the module docstring for its call per ``placement``.
        needs_slices: whether the block is sized by the number of slices (needs a fixed patch depth).
        placement: ``"level"`` (after every encoder/decoder level) or ``"skip"`` (gates the skip connections).
        vnet_bottleneck: ``"block"`` or ``"se"``, the block after VNet's bottleneck.
        vnet_options: default options of the block in VNet (explicit ``attention_kwargs`` win).
    """

    name: str
    builder: AttentionBuilder
    needs_slices: bool = False
    placement: str = "level"
    vnet_bottleneck: str = "block"
    vnet_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got placement={self.placement!r}.")
        if self.vnet_bottleneck not in VNET_BOTTLENECKS:
            raise ValueError(
                f"vnet_bottleneck must be one of {VNET_BOTTLENECKS}, got vnet_bottleneck={self.vnet_bottleneck!r}."
            )
        object.__setattr__(self, "vnet_options", MappingProxyType(dict(self.vnet_options)))

    @property
    def is_skip_gate(self) -> bool:
        """Whether the block gates skip connections instead of following levels."""
        return self.placement == "skip"


ATTENTION_BLOCKS: dict[str, AttentionSpec] = {}
"""The registry: :class:`AttentionSpec` by name."""


def register_attention(
    name: str,
    needs_slices: bool = False,
    placement: str = "level",
    vnet_bottleneck: str = "block",
    vnet_options: Mapping[str, Any] | None = None,
) -> Callable[[AttentionBuilder], AttentionBuilder]:
    """Decorator registering an attention builder under ``name`` (one :class:`AttentionSpec`).

    Args:
        name: the name used by :func:`get_attention_block` and the networks' ``attention`` argument.
        needs_slices: whether the block is sized by the number of slices (then ``num_slices`` is required).
        placement: ``"level"`` or ``"skip"``, see :class:`AttentionSpec`.
        vnet_bottleneck: ``"block"`` or ``"se"``, see :class:`AttentionSpec`.
        vnet_options: default block options inside VNet.

    Returns:
        a decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: when ``name`` is already registered or a field is invalid.
    """
    key = name.lower()

    def decorator(builder: AttentionBuilder) -> AttentionBuilder:
        if key in ATTENTION_BLOCKS:
            raise ValueError(f"attention block {name!r} is already registered (by {ATTENTION_BLOCKS[key].builder!r}).")
        ATTENTION_BLOCKS[key] = AttentionSpec(
            key, builder, needs_slices, placement, vnet_bottleneck, dict(vnet_options or {})
        )
        return builder

    return decorator


def list_attention_blocks() -> list[str]:
    """Sorted names of the registered attention blocks."""
    return sorted(ATTENTION_BLOCKS)


def get_attention_spec(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` registered as ``name`` (case-insensitive).

    Raises:
        ValueError: when ``name`` is not registered.
    """
    return lookup(ATTENTION_BLOCKS, name, "attention block")


def attention_needs_slices(name: str) -> bool:
    """Whether the attention block ``name`` needs ``num_slices`` (i.e. a fixed patch depth).

    Raises:
        ValueError: when ``name`` is not registered.
    """
    return get_attention_spec(name).needs_slices


def is_skip_gate(name: str) -> bool:
    """Whether the attention block ``name`` gates skip connections (e.g. ``"ag"``) rather than following levels.

    Raises:
        ValueError: when ``name`` is not registered.
    """
    return get_attention_spec(name).is_skip_gate


def check_options(spec: AttentionSpec, *args: Any, **kwargs: Any) -> None:
    """Raise ValueError unless ``spec.builder`` accepts ``(*args, **kwargs)``."""
    try:
        inspect.signature(spec.builder).bind(*args, **kwargs)
    except TypeError as err:
        options = sorted(k for k in kwargs if k not in ("num_slices", "slice_axis"))
        raise ValueError(f"invalid options {options} for attention block {spec.name!r}: {err}.") from err


def get_attention_block(
    name: str, spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1, **kwargs
) -> nn.Module:
    """Build the per-level block of the attention registered as ``name``.

    Args:
        name: a registered name (case-insensitive), see :func:`list_attention_blocks`.
        spatial_dims: number of spatial dimensions.
        channels: number of channels of the features the block attends to.
        num_slices: number of slices along ``slice_axis``; required by slice-sized blocks such as ``"pam"``.
        slice_axis: index of the slice axis among the spatial dims. Defaults to -1.
        kwargs: block-specific options, e.g. ``slice_reduction``, ``channel_reduction``, ``pool``
            for ``"pam"`` and ``r`` for ``"se"``.

    Returns:
        a module mapping ``(B, channels, *spatial)`` to the same shape; the identity for skip gates (their
        options are still checked), which :func:`~networks.blocks.attention_gate.get_skip_gate` builds.

    Raises:
        ValueError: when ``name`` is unknown, ``kwargs`` holds an option the block does not take, or
            ``num_slices`` is missing for a slice-sized block.
    """
    spec = get_attention_spec(name)
    if spec.is_skip_gate:
        check_options(spec, spatial_dims, channels, channels, **kwargs)
        return nn.Identity()
    if spec.needs_slices and num_slices is None:
        raise ValueError(f"attention block {name!r} is sized by the number of slices: pass num_slices.")
    check_options(spec, spatial_dims, channels, num_slices=num_slices, slice_axis=slice_axis, **kwargs)
    return spec.builder(spatial_dims, channels, num_slices=num_slices, slice_axis=slice_axis, **kwargs)


def slice_block_builder(block: Callable[..., nn.Module]) -> AttentionBuilder:
    """The registry builder of a slice-sized block class taking
    ``(spatial_dims, channels, num_slices, slice_reduction, channel_reduction, pool, slice_axis)``
    (``"pam"``, ``"scse"``, ``"csse"``)."""

    def build(
        spatial_dims: int,
        channels: int,
        num_slices: int | None = None,
        slice_axis: int = -1,
        slice_reduction: int = 16,
        channel_reduction: int = 8,
        pool: str = "avg",
    ) -> nn.Module:
        if num_slices is None:
            raise ValueError(f"{block.__name__} needs num_slices.")
        return block(spatial_dims, channels, num_slices, slice_reduction, channel_reduction, pool, slice_axis)

    build.__doc__ = f"Slice-sized block :class:`{block.__name__}`."
    return build


def plain_block_builder(block: Callable[..., nn.Module]) -> AttentionBuilder:
    """The registry builder of a block class taking ``(spatial_dims, channels, **options)`` (not sized by slices,
    e.g. ``"pe"``, ``"cbam"``): it ignores ``num_slices`` and ``slice_axis``, and its signature lists the block's
    options, so that :func:`get_attention_block` rejects unknown ones."""

    def build(spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1, **options):
        return block(spatial_dims, channels, **options)

    own = list(inspect.signature(build).parameters.values())[:4]
    options = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in list(inspect.signature(block).parameters.values())[2:]
    ]
    build.__signature__ = inspect.Signature(own + options)
    build.__doc__ = f"Block :class:`{block.__name__}`."
    return build


# the PAM paper's reductions on VNet, r_D = 8 and r_C = 4, and SE at its bottleneck (depth may be 1 there)
SLICE_BLOCK_VNET = {"vnet_bottleneck": "se", "vnet_options": {"slice_reduction": 8, "channel_reduction": 4}}


@register_attention("none")
def build_identity(spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1) -> nn.Module:
    """No attention."""
    return nn.Identity()


@register_attention("se")
def build_se(
    spatial_dims: int, channels: int, num_slices: int | None = None, slice_axis: int = -1, r: int = 8
) -> nn.Module:
    """AnatomyNet-style squeeze-and-excitation: global pool, FC C -> C/r, ReLU, FC, sigmoid, multiply.

    MONAI's :class:`~monai.networks.blocks.ChannelSELayer`; ``r`` (default 8) is clamped to ``channels``
    so that narrow layers keep at least one hidden unit.
    """
    if r < 1:
        raise ValueError(f"r must be a positive integer, got r={r}.")
    return ChannelSELayer(spatial_dims, channels, r=min(r, channels))


register_attention("pam", needs_slices=True, **SLICE_BLOCK_VNET)(slice_block_builder(ProgressiveAttention))


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
    axis = normalise_slice_axis(slice_axis, spatial_dims)
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
