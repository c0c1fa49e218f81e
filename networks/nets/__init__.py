"""Whole networks; each registers itself in :mod:`networks.registry`."""

from __future__ import annotations

from .unet import AttentionUNet
from .vnet import AttentionVNet
from .lanet import LANet, ResNetClassifier, ResNetFeatures

__all__ = ["AttentionVNet", "AttentionUNet", "LANet", "ResNetClassifier", "ResNetFeatures"]
