"""Argument and input checks shared by the attention blocks and the networks."""

from __future__ import annotations

import torch

__all__ = ["check_block_input", "check_positive", "check_spatial_dims", "normalise_slice_axis"]


def check_spatial_dims(spatial_dims: int, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``spatial_dims`` is 2 or 3."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"{name} supports spatial_dims 2 or 3, got spatial_dims={spatial_dims}.")


def normalise_slice_axis(slice_axis: int, spatial_dims: int) -> int:
    """Map ``slice_axis`` (an index into the spatial dims, negative allowed) to ``0..spatial_dims-1``.

    Raises:
        ValueError: when ``slice_axis`` is out of range.
    """
    if not -spatial_dims <= slice_axis < spatial_dims:
        raise ValueError(
            f"slice_axis indexes the spatial dims and must lie in [{-spatial_dims}, {spatial_dims - 1}] "
            f"for spatial_dims={spatial_dims}, got slice_axis={slice_axis}."
        )
    return slice_axis % spatial_dims


def check_positive(**values: int) -> None:
    """Raise ValueError naming the first of ``values`` (name=value) that is not a positive integer."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={value}.")


def check_block_input(x: torch.Tensor, block: str, channels: int, spatial_dims: int) -> None:
    """Raise ValueError naming ``block`` unless ``x`` is ``(B, channels, *spatial)`` with ``spatial_dims`` dims."""
    if x.ndim != spatial_dims + 2 or x.shape[1] != channels:
        raise ValueError(
            f"{block} expects input (B, {channels}, <{spatial_dims} spatial dims>), got shape {list(x.shape)}."
        )
