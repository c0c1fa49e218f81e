"""Synthetic MALC demo data.

Written in the layout :func:`~pipelines.data.datalists.malc_datalist` reads,
``<root>/images/<id>.nii.gz`` with ``<root>/masks/<id>.nii.gz``: a T1-like brain with ten deep
structures (labels 1..10) of distinct intensity at jittered positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .common import (
    ellipsoid_distance,
    random_affine,
    seeded_rng,
    smooth_noise,
    write_images_masks,
)

__all__ = ["make_malc_demo"]

# MALC: (centre as a fraction of the shape, radii as a fraction of the shape, intensity) per label;
# five bilateral pairs (ventricle, thalamus, caudate, putamen, hippocampus), x is left-right.
_MALC_STRUCTURES = (
    ((0.41, 0.55, 0.60), (0.05, 0.12, 0.06), 0.10),
    ((0.59, 0.55, 0.60), (0.05, 0.12, 0.06), 0.20),
    ((0.40, 0.44, 0.44), (0.08, 0.09, 0.07), 0.64),
    ((0.60, 0.44, 0.44), (0.08, 0.09, 0.07), 0.72),
    ((0.33, 0.64, 0.48), (0.05, 0.07, 0.06), 0.82),
    ((0.67, 0.64, 0.48), (0.05, 0.07, 0.06), 0.90),
    ((0.25, 0.50, 0.40), (0.05, 0.09, 0.08), 1.00),
    ((0.75, 0.50, 0.40), (0.05, 0.09, 0.08), 1.10),
    ((0.29, 0.30, 0.26), (0.06, 0.10, 0.05), 0.28),
    ((0.71, 0.30, 0.26), (0.06, 0.10, 0.05), 0.36),
)


def _malc_case(index: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = seeded_rng(seed, 1, index)
    ext = np.asarray(shape, float)
    head_centre = (ext - 1.0) / 2.0 + rng.uniform(-1.0, 1.0, 3)
    d_head = ellipsoid_distance(shape, head_centre, ext * 0.47) + 0.03 * smooth_noise(rng, shape, 6.0)
    brain = d_head < 0.9
    scalp = (d_head >= 0.93) & (d_head < 1.0)

    image = np.zeros(shape)
    white_matter = 1.0 / (1.0 + np.exp(-3.0 * smooth_noise(rng, shape, 2.0)))
    image[brain] = 0.45 + 0.1 * white_matter[brain]
    image[scalp] = 0.8
    label = np.zeros(shape, np.uint8)
    scale = rng.uniform(0.9, 1.1)
    offset = head_centre - (ext - 1.0) / 2.0
    blob = smooth_noise(rng, shape, 2.0)
    for value, (centre, radii, intensity) in enumerate(_MALC_STRUCTURES, start=1):
        c = np.asarray(centre) * (ext - 1.0) + offset + rng.uniform(-1.5, 1.5, 3)
        r = np.maximum(np.asarray(radii) * ext * scale * rng.uniform(0.9, 1.1, 3), 1.5)
        region = (ellipsoid_distance(shape, c, r) + 0.1 * blob < 1.0) & brain
        label[region] = value
        image[region] = intensity
    image = ndimage.gaussian_filter(image, 0.5)
    image *= 1.0 + 0.05 * smooth_noise(rng, shape, 10.0)
    image += 0.02 * rng.standard_normal(shape)
    image = np.where(d_head < 1.0, np.maximum(image, 0.0), 0.0) * rng.uniform(80.0, 120.0)
    return image.astype(np.float32), label, random_affine(rng, shape, (1.0, 1.0, 1.0))


def make_malc_demo(root: str, num_cases: int = 6, shape: Sequence[int] = (48, 56, 48), seed: int = 0) -> str:
    """Write a MALC-like dataset ``<root>/images/<id>.nii.gz`` + ``<root>/masks/<id>.nii.gz``.

    Case ids follow the MICCAI 2012 atlases (``1000_3``, ``1001_3``, ...); the mask has the same
    file name as its image. Images are float32 T1-like heads with 1 mm spacing and a random
    affine (rotation about z, random origin); masks are uint8 with labels 0..10: five bilateral
    pairs of deep structures, each with its own intensity.

    Args:
        root: output folder.
        num_cases: number of cases.
        shape: volume shape in voxels, each >= 16.
        seed: non-negative random seed.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: for a bad ``num_cases``, ``shape`` or ``seed``.
    """
    return write_images_masks(
        root, num_cases, shape, seed, _malc_case, lambda i: (f"{1000 + i}_3.nii.gz", f"{1000 + i}_3.nii.gz")
    )
