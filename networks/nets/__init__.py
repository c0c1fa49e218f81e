"""Whole networks; each registers itself in :mod:`networks.registry`.

The factory function :func:`networks.nets.retinanet.retinanet` is not re-exported here: it would shadow its module.
"""

from __future__ import annotations

from .cam_classifier import CAM_BACKBONES, CAMClassifier
from .encoder_decoder import AttentionEncoderDecoder, DecoderLevel, EncoderLevel
from .joint_segcls import JointSegClsNet, NestedUNetDecoder
from .lanet import LANet, ResNetClassifier, ResNetFeatures
from .retinanet import ResNetFPNFeatures, build_detector
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
    "ResNetFPNFeatures",
    "build_detector",
]
