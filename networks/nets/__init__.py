"""Whole networks; each registers itself in :mod:`networks.registry`."""

from __future__ import annotations

from .unet import AttentionUNet
from .lanet import LANet, ResNetClassifier, ResNetFeatures

__all__ = ["AttentionUNet", "LANet", "ResNetClassifier", "ResNetFeatures"]
