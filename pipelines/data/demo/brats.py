"""Synthetic BraTS 2018 demo data.

Written in the layout :func:`~pipelines.data.datalists.brats_datalist` reads,
``<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz``: a brain ellipsoid with a tumour made of
edema (2), an enhancing ring (4) and a necrotic core (1). The regions are only separable by
combining modalities (edema bright on T2/FLAIR, ring bright on T1ce, necrosis dark on T1ce but
bright on T2). Even-indexed cases have a RAS affine, odd-indexed cases an LPS one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..datalists.brats import BRATS_MODALITIES
from .common import (
    check_count,
    check_shape,
    ellipsoid_distance,
    save_nifti,
    seeded_rng,
    smooth_noise,
)

__all__ = ["make_brats_demo"]

# Normalised intensity of (normal brain, edema 2, enhancing 4, necrosis 1) per modality.
_BRATS_CONTRAST = {
    "t1": (0.60, 0.50, 0.52, 0.40),
    "t1ce": (0.60, 0.55, 1.00, 0.25),
    "t2": (0.40, 0.85, 0.65, 1.00),
    "flair": (0.40, 0.90, 0.70, 0.55),
}
# Grey/white matter texture contrast per modality (white matter brighter on T1, darker on T2).
_BRATS_WM_CONTRAST = {"t1": 0.08, "t1ce": 0.06, "t2": -0.08, "flair": -0.05}
_BRATS_GAIN = {"t1": 900.0, "t1ce": 1100.0, "t2": 1400.0, "flair": 700.0}


def _brats_affine(index: int, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """RAS for even ``index``, LPS (``diag(-1, -1, 1)``) for odd ``index``; 1 mm, non-zero origin."""
    signs = np.array([1.0, 1.0, 1.0]) if index % 2 == 0 else np.array([-1.0, -1.0, 1.0])
    affine = np.diag([*signs, 1.0])
    centre = (np.asarray(shape, float) - 1.0) / 2.0
    affine[:3, 3] = -signs * centre + np.round(rng.uniform(-10.0, 10.0, 3), 1) + 0.5
    return affine


def _brats_case(
    index: int, shape: tuple[int, int, int], seed: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One BraTS-like case: (modality -> float32 volume, uint8 segmentation, affine)."""
    rng = seeded_rng(seed, 0, index)
    ext = np.asarray(shape, float)
    lgg = index % 4 == 3  # no necrotic core (label 1) in these cases

    # brain: a slightly irregular ellipsoid filling most of the volume
    brain_centre = (ext - 1.0) / 2.0 + rng.uniform(-1.5, 1.5, 3)
    brain_radii = ext * np.array([0.42, 0.45, 0.42]) * rng.uniform(0.95, 1.05, 3)
    d_brain = ellipsoid_distance(shape, brain_centre, brain_radii) + 0.04 * smooth_noise(rng, shape, 6.0)
    brain = d_brain < 1.0

    # tumour: irregular edema blob, a compact core inside it, necrosis where the core is deep
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    tumour_centre = brain_centre + direction * rng.uniform(0.1, 0.4) * brain_radii
    edema_radii = ext * rng.uniform(0.2, 0.27) * rng.uniform(0.85, 1.15, 3)
    d_edema = ellipsoid_distance(shape, tumour_centre, edema_radii) + 0.12 * smooth_noise(rng, shape, 4.0)
    edema = (d_edema < 1.0) & brain
    core_centre = tumour_centre + rng.uniform(-0.1, 0.1, 3) * edema_radii
    core_radii = edema_radii * rng.uniform(0.5, 0.6) * rng.uniform(0.9, 1.1, 3)
    d_core = ellipsoid_distance(shape, core_centre, core_radii) + 0.06 * smooth_noise(rng, shape, 3.0)
    core = (d_core < 1.0) & edema
    ring_thickness = rng.uniform(2.0, 3.0)
    necrosis = ndimage.distance_transform_edt(core) > ring_thickness if not lgg else np.zeros(shape, bool)

    seg = np.zeros(shape, np.uint8)
    seg[edema] = 2
    seg[core] = 4
    seg[necrosis] = 1

    white_matter = 1.0 / (1.0 + np.exp(-3.0 * smooth_noise(rng, shape, 2.5))) - 0.5
    images = {}
    for modality in BRATS_MODALITIES:
        normal, c_edema, c_enh, c_nec = _BRATS_CONTRAST[modality]
        image = np.full(shape, normal) + _BRATS_WM_CONTRAST[modality] * white_matter
        image[seg == 2] = c_edema
        image[seg == 4] = c_enh
        image[seg == 1] = c_nec
        image = ndimage.gaussian_filter(image, 0.6)  # partial volume at region borders
        image *= 1.0 + 0.08 * smooth_noise(rng, shape, 12.0)  # bias field
        image += 0.025 * rng.standard_normal(shape)
        image = np.where(brain, np.maximum(image, 0.01), 0.0) * _BRATS_GAIN[modality] * rng.uniform(0.85, 1.15)
        images[modality] = image.astype(np.float32)
    return images, seg, _brats_affine(index, shape, rng)


def make_brats_demo(root: str, num_cases: int = 8, shape: Sequence[int] = (64, 64, 48), seed: int = 0) -> str:
    """Write a BraTS 2018-like dataset ``<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz``.

    Cases are named ``Brats18_DEMO_<index>_1`` (index from 0). Images are float32 with 1 mm
    spacing, the segmentation uint8 with labels {0, 1, 2, 4}; every fourth case (index 3, 7, ...)
    is LGG-like and has no necrotic core (label 1); in very small volumes (below ~32 voxels per
    axis) other cases may lack it too, as the core is kept inside a ring at least 2 voxels thick. Even-indexed cases use a RAS affine, odd ones
    an LPS affine (``diag(-1, -1, 1)``), both with a non-zero origin. Zero outside the brain.

    Args:
        root: output folder (created if needed; existing files of the same names are overwritten).
        num_cases: number of cases.
        shape: volume shape (x, y, z) in voxels, each >= 16.
        seed: non-negative random seed; the same seed gives identical arrays.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: for a bad ``num_cases``, ``shape`` or ``seed``.
    """
    num_cases = check_count(num_cases, "num_cases")
    shape = check_shape(shape, 3, "shape")
    root = os.fspath(root)
    for index in range(num_cases):
        case = f"Brats18_DEMO_{index}_1"
        folder = os.path.join(root, case)
        os.makedirs(folder, exist_ok=True)
        images, seg, affine = _brats_case(index, shape, seed)
        for modality, image in images.items():
            save_nifti(os.path.join(folder, f"{case}_{modality}.nii.gz"), image, affine)
        save_nifti(os.path.join(folder, f"{case}_seg.nii.gz"), seg, affine)
    return root
