"""MONAI-style array and dictionary transforms specific to the project's datasets, and the per-dataset transform
builders (:mod:`transforms.recipes`)."""

from __future__ import annotations

from . import brats, busi, postprocessing, recipes
from .brats import (
    BRATS_REGIONS,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    regions_from_labels,
)
from .busi import (
    BoxesToMaskd,
    DilateMaskd,
    LoadBUSId,
    MasksToBoxesd,
    PartialAnnotationd,
    RandResizedCropd,
)
from .io import LoadFramed, load_input_image
from .postprocessing import KeepLargestComponentPerClass, KeepLargestComponentPerClassd
from .recipes import (
    busi_eval_transforms,
    busi_train_transforms,
    segmentation_transforms,
)
from .ultrasound import (
    CLAHE,
    CLAHEd,
    RandAffineBoxd,
    ResizeBoxd,
    ScannerFrameCrop,
    ScannerFrameCropd,
    scanner_frame_bounds,
)

__all__ = [
    "CLAHE",
    "CLAHEd",
    "LoadFramed",
    "RandAffineBoxd",
    "ResizeBoxd",
    "ScannerFrameCrop",
    "ScannerFrameCropd",
    "load_input_image",
    "scanner_frame_bounds",
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
    "brats",
    "busi",
    "postprocessing",
    "recipes",
    "segmentation_transforms",
]
