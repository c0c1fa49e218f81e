"""Building blocks shared by the demo-data generators.

Seeded random generators (a case's randomness depends on ``(seed, dataset, case)`` only),
argument checks, smooth noise and ellipsoids, random affines, NIfTI and 8-bit image writing, and
the ``<root>/images`` + ``<root>/masks`` writer of the MALC and HVSMR generators.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = [
    "check_count",
    "check_shape",
    "ellipsoid_distance",
    "random_affine",
    "save_nifti",
    "seeded_rng",
    "smooth_noise",
    "to_uint8",
    "write_images_masks",
]


def seeded_rng(seed: int, dataset: int, case: int) -> np.random.Generator:
    """A generator that depends on (seed, dataset, case) only."""
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    return np.random.default_rng([int(seed), int(dataset), int(case)])


def check_shape(shape: Sequence[int], ndim: int, name: str, minimum: int = 16) -> tuple[int, ...]:
    """``shape`` as a tuple of ``ndim`` ints >= ``minimum``; ValueError naming ``name`` otherwise."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or any(s < minimum for s in shape):
        raise ValueError(f"{name} must be {ndim} integers >= {minimum}, got {shape}.")
    return shape


def check_count(value: int, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; ValueError naming ``name`` otherwise."""
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float]) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit standard deviation.

    Wide kernels are applied on a coarser grid that is then linearly upsampled (same look, less time).
    """
    shape = tuple(int(s) for s in shape)
    sigma = np.broadcast_to(np.asarray(sigma, float), (len(shape),))
    factor = max(1, int(sigma.min() // 2))
    if factor > 1:
        low = tuple(int(np.ceil(s / factor)) + 1 for s in shape)
        field = ndimage.gaussian_filter(rng.standard_normal(low), sigma / factor, mode="reflect")
        field = ndimage.zoom(field, [s / lo for s, lo in zip(shape, low)], order=1)
    else:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def ellipsoid_distance(shape: Sequence[int], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Normalised ellipsoid distance: < 1 inside the ellipsoid with ``centre`` and ``radii`` (voxels)."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return np.sqrt(dist)


def _rotation_z(angle: float) -> np.ndarray:
    """Rotation matrix about z by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_affine(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """A rotation about z by up to 15 degrees, ``spacing`` mm voxels and a random non-zero origin."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(rng.uniform(-np.pi / 12, np.pi / 12)) @ np.diag(spacing)
    centre = (np.asarray(shape, float) - 1.0) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre + rng.uniform(-20.0, 20.0, 3)
    return affine


def save_nifti(path: str, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` with ``affine`` as qform and sform (code 1, mm units)."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An image in 0..1 rounded to 8 bits (0..255, clipped)."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def write_images_masks(root, num_cases, shape, seed, make_case, names) -> str:
    """Write ``<root>/images/<image name>`` and ``<root>/masks/<mask name>`` for ``make_case(index, shape, seed)``.

    ``names(index)`` gives the (image, mask) file names; shared by the MALC and HVSMR generators.
    """
    num_cases = check_count(num_cases, "num_cases")
    shape = check_shape(shape, 3, "shape")
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    for index in range(num_cases):
        image, label, affine = make_case(index, shape, seed)
        image_name, mask_name = names(index)
        save_nifti(os.path.join(root, "images", image_name), image, affine)
        save_nifti(os.path.join(root, "masks", mask_name), label, affine)
    return root
