"""Losses, one module per loss family."""

from __future__ import annotations

from .dice_bce import DiceBCELoss
from .lanet import LANetJointLoss, LANetMaskLoss, downsample_mask

__all__ = ['DiceBCELoss', 'LANetJointLoss', 'LANetMaskLoss', 'downsample_mask']
