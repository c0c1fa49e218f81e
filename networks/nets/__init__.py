"""Whole networks; each registers itself in :mod:`networks.registry`."""

from __future__ import annotations

from .cam_classifier import CAM_BACKBONES, CAMClassifier
from .encoder_decoder import AttentionEncoderDecoder, DecoderLevel, EncoderLevel
from .joint_segcls import JointSegClsNet, NestedUNetDecoder
from .lanet import LANet, ResNetClassifier, ResNetFeatures
from .unet import AttentionUNet
from .vnet import AttentionVNet

__all__ = [
    "CAM_BACKBONES",
    "CAMClassifier",
    "AttentionEncoderDecoder",
    "AttentionUNet",
    "AttentionVNet",
    "DecoderLevel",
    "EncoderLevel",
    "JointSegClsNet",
    "NestedUNetDecoder",
    "LANet",
    "ResNetClassifier",
    "ResNetFeatures",
]
