"""MONAI-style array and dictionary transforms specific to the project's datasets."""

from __future__ import annotations

from .brats import BRATS_REGIONS, BratsRegionsToLabels, BratsRegionsToLabelsd, regions_from_labels

__all__ = ["BRATS_REGIONS", "BratsRegionsToLabels", "BratsRegionsToLabelsd", "regions_from_labels"]
