"""Synthetic HVSMR 2016 demo data.

Written in the layout :func:`~pipelines.data.datalists.hvsmr_datalist` reads,
``<root>/images/training_axial_crop_pat<N>.nii.gz`` with
``<root>/masks/training_axial_crop_pat<N>-label.nii.gz``: a thorax with a bright blood pool (2)
surrounded by an intermediate myocardium shell (1).
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

__all__ = ["make_hvsmr_demo"]


def _hvsmr_case(index: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = seeded_rng(seed, 2, index)
    ext = np.asarray(shape, float)
    # voxel spacing ~0.9 mm in-plane, slightly thicker slices
    spacing = np.array([rng.uniform(0.85, 0.95)] * 2 + [rng.uniform(0.95, 1.15)])
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    body = ((grids[0] - (ext[0] - 1) / 2) / (0.48 * ext[0])) ** 2 + (
        (grids[1] - (ext[1] - 1) / 2) / (0.44 * ext[1])
    ) ** 2 < 1.0
    body = np.broadcast_to(body, shape)
    lungs = np.zeros(shape, bool)
    for side in (-1.0, 1.0):
        c = (ext - 1.0) / 2.0 + np.array([side * 0.3, 0.02, 0.0]) * ext + rng.uniform(-1.0, 1.0, 3)
        lungs |= ellipsoid_distance(shape, c, ext * np.array([0.15, 0.3, 0.6])) < 1.0
    lungs &= body

    jitter = rng.uniform(-0.04, 0.04, 3) * ext
    scale = rng.uniform(0.9, 1.1)
    heart_centre = (ext - 1.0) / 2.0 + jitter
    lv_centre = heart_centre + np.array([0.08, 0.05, -0.07]) * ext
    rv_centre = heart_centre + np.array([-0.12, -0.08, -0.07]) * ext
    d_lv = ellipsoid_distance(shape, lv_centre, ext * np.array([0.11, 0.14, 0.2]) * scale)
    d_rv = ellipsoid_distance(shape, rv_centre, ext * np.array([0.1, 0.15, 0.18]) * scale)
    ventricles = (d_lv < 1.0) | (d_rv < 1.0)
    atria = (
        ellipsoid_distance(
            shape, heart_centre + np.array([0.0, 0.07, 0.2]) * ext, ext * np.array([0.2, 0.11, 0.09]) * scale
        )
        < 1.0
    )
    # ascending aorta: a tube rising from the left ventricle to the top of the volume
    aorta_xy = lv_centre[:2] + np.array([-0.05, 0.13]) * ext[:2]
    aorta_r = 0.07 * ext[0] * scale
    aorta = ((grids[0] - aorta_xy[0]) ** 2 + (grids[1] - aorta_xy[1]) ** 2 < aorta_r**2) & (grids[2] > lv_centre[2])
    blood = ventricles | atria | aorta
    # myocardium: a shell of ~2.5 mm around the ventricles and atria, not around the aorta
    dist = ndimage.distance_transform_edt(~(ventricles | atria), sampling=spacing)
    myocardium = (dist > 0) & (dist <= rng.uniform(2.3, 2.8)) & ~blood

    label = np.zeros(shape, np.uint8)
    label[myocardium] = 1
    label[blood] = 2

    image = np.where(body, 0.25, 0.02)
    image = image + 0.08 * np.where(body, smooth_noise(rng, shape, 2.0), 0.0)
    image[lungs] = 0.06
    image[myocardium] = 0.5
    image[blood] = 1.0
    image = ndimage.gaussian_filter(image, 0.6)
    image *= 1.0 + 0.1 * smooth_noise(rng, shape, 10.0)
    image += 0.03 * rng.standard_normal(shape)
    image = np.maximum(image, 0.0) * rng.uniform(200.0, 300.0)
    return image.astype(np.float32), label, random_affine(rng, shape, spacing)


def make_hvsmr_demo(root: str, num_cases: int = 6, shape: Sequence[int] = (48, 48, 40), seed: int = 0) -> str:
    """Write an HVSMR 2016-like dataset ``<root>/{images,masks}``.

    Files follow the challenge naming: ``images/training_axial_crop_pat<N>.nii.gz`` and
    ``masks/training_axial_crop_pat<N>-label.nii.gz``. Images are float32 thoraxes (spacing about
    0.9 x 0.9 x 1.05 mm, random rotation and origin); masks are uint8 with 0 background,
    1 myocardium (an intermediate-intensity shell) and 2 blood pool (bright ventricles, atria and
    aorta).

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
        root,
        num_cases,
        shape,
        seed,
        _hvsmr_case,
        lambda i: (f"training_axial_crop_pat{i}.nii.gz", f"training_axial_crop_pat{i}-label.nii.gz"),
    )
