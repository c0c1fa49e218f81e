"""Whole networks; each registers itself in :mod:`networks.registry`."""

from __future__ import annotations

from .encoder_decoder import AttentionEncoderDecoder, DecoderLevel, EncoderLevel
from .lanet import LANet, ResNetClassifier, ResNetFeatures
from .unet import AttentionUNet
from .vnet import AttentionVNet

__all__ = [
    "AttentionEncoderDecoder",
    "AttentionUNet",
    "AttentionVNet",
    "DecoderLevel",
    "EncoderLevel",
    "LANet",
    "ResNetClassifier",
    "ResNetFeatures",
]
