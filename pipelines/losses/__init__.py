"""Losses, one module per loss family."""

from __future__ import annotations

from .cam_attention import (
    ATTENTION_MODES,
    GradCAMAttentionLoss,
    attention_lambda,
    grad_cam_maps,
)
from .dice_bce import DiceBCELoss
from .joint_segcls import JointSegClsLoss, class_weights
from .lanet import LANetJointLoss, LANetMaskLoss, downsample_mask

__all__ = ['ATTENTION_MODES', 'GradCAMAttentionLoss', 'attention_lambda', 'grad_cam_maps',
           'JointSegClsLoss', 'class_weights',
           'DiceBCELoss', 'LANetJointLoss', 'LANetMaskLoss', 'downsample_mask']
