"""MONAI-style array and dictionary transforms specific to the project's datasets."""

from __future__ import annotations

from .busi import (
    BoxesToMaskd,
    DilateMaskd,
    LoadBUSId,
    MasksToBoxesd,
    PartialAnnotationd,
    RandResizedCropd,
    busi_eval_transforms,
    busi_train_transforms,
)
from . import brats, busi, postprocessing
from .brats import BRATS_REGIONS, BratsRegionsToLabels, BratsRegionsToLabelsd, regions_from_labels
from .postprocessing import KeepLargestComponentPerClass, KeepLargestComponentPerClassd

__all__ = [
    "BoxesToMaskd",
    "DilateMaskd",
    "LoadBUSId",
    "MasksToBoxesd",
    "PartialAnnotationd",
    "RandResizedCropd",
    "busi_eval_transforms",
    "busi_train_transforms",
    "BRATS_REGIONS",
    "BratsRegionsToLabels",
    "BratsRegionsToLabelsd",
    "regions_from_labels",
    "KeepLargestComponentPerClass",
    "KeepLargestComponentPerClassd",
]
