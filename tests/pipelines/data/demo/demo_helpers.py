"""Helpers shared by the demo-data tests (reading a NIfTI volume or a grayscale image)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image


def load_nifti(path: str) -> np.ndarray:
    """The voxel array of a NIfTI file."""
    return np.asarray(nib.load(path).dataobj)


def gray(path: str) -> np.ndarray:
    """An image file as an 8-bit grayscale array."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))
