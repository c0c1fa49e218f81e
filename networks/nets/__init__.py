"""Whole networks; each registers itself in :mod:`networks.registry`."""

from __future__ import annotations

from .unet import AttentionUNet

__all__ = ["AttentionUNet"]
