"""Deterministic synthetic demo datasets written in the real on-disk layouts.

Each ``make_*_demo`` function writes a small dataset with the folder and file naming of the
real download, so that the datalist scanners in :mod:`pipelines.data.datalists` and the bundles
run unchanged on it. The images carry label-dependent structure that a small network can learn
in a minute on a CPU:

* BraTS 2018 (``<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz``): a brain ellipsoid with a
  tumour made of edema (2), an enhancing ring (4) and a necrotic core (1). The regions are only
  separable by combining modalities (edema bright on T2/FLAIR, ring bright on T1ce, necrosis dark
  on T1ce but bright on T2). Even-indexed cases have a RAS affine, odd-indexed cases an LPS one.
* MALC (``<root>/{images,masks}/<id>.nii.gz``): a T1-like brain with ten deep structures
  (labels 1..10) of distinct intensity at jittered positions.
* HVSMR 2016 (``<root>/images/training_axial_crop_pat<N>.nii.gz`` with
  ``<root>/masks/training_axial_crop_pat<N>-label.nii.gz``): a thorax with a bright blood pool
  (2) surrounded by an intermediate myocardium shell (1).
* BUSI (``<root>/{benign,malignant,normal}/<cls> (N).png`` with ``<cls> (N)_mask.png`` and
  sometimes ``<cls> (N)_mask_1.png``): speckled ultrasound with smooth oval benign lesions
  (posterior enhancement) and irregular, spiculated, taller-than-wide malignant lesions
  (posterior shadowing). Like the real data, a few images are RGB or RGBA PNGs.
* NIH ChestX-ray14 (``<root>/images/<pid>_<fu>.png`` and ``<root>/Data_Entry_2017.csv``):
  radiograph-like thoraxes with basal effusions (meniscus), apical pneumothoraces (pleural line)
  and subcutaneous emphysema (dark streaks in the chest wall).

Randomness comes only from :class:`numpy.random.Generator` objects seeded with
``(seed, dataset, case)``, so the same seed gives byte-identical arrays and a case does not depend
on how many cases are generated.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = [
    "DEMO_DATASETS",
    "DEMO_MARKER",
    "DEMO_VERSION",
    "demo_root",
    "ensure_demo_dataset",
    "make_brats_demo",
    "make_busi_demo",
    "make_chestxray14_demo",
    "make_hvsmr_demo",
    "make_malc_demo",
]

#: Bumped whenever the content of a generator changes, so cached demo data is regenerated.
DEMO_VERSION = 1
#: Written last into a complete demo dataset; holds the generator arguments as JSON.
DEMO_MARKER = ".demo_complete"
#: Written first and removed last; marks a folder as a (possibly interrupted) demo generation.
_DEMO_PARTIAL = ".demo_incomplete"

_BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
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

_BUSI_CLASS_ORDER = ("benign", "malignant", "normal")

_CXR_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
# Patient types, cycled over patient ids: the findings their images get.
_CXR_PATIENT_TYPES = (
    "No Finding",
    "Effusion",
    "Pneumothorax",
    "No Finding",
    "Effusion",
    "Subcutaneous Emphysema",
    "No Finding",
    "mixed",
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _rng(seed: int, dataset: int, case: int) -> np.random.Generator:
    """A generator that depends on (seed, dataset, case) only."""
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    return np.random.default_rng([int(seed), int(dataset), int(case)])


def _check_shape(shape: Sequence[int], ndim: int, name: str, minimum: int = 16) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or any(s < minimum for s in shape):
        raise ValueError(f"{name} must be {ndim} integers >= {minimum}, got {shape}.")
    return shape


def _check_count(value: int, name: str, minimum: int = 1) -> int:
    if int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float]) -> np.ndarray:
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


def _ellipsoid_distance(shape: Sequence[int], centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    """Normalised ellipsoid distance: < 1 inside the ellipsoid with ``centre`` and ``radii`` (voxels)."""
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return np.sqrt(dist)


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _random_affine(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """A rotation about z by up to 15 degrees, ``spacing`` mm voxels and a random non-zero origin."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(rng.uniform(-np.pi / 12, np.pi / 12)) @ np.diag(spacing)
    centre = (np.asarray(shape, float) - 1.0) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre + rng.uniform(-20.0, 20.0, 3)
    return affine


def _save_nifti(path: str, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# BraTS 2018
# --------------------------------------------------------------------------------------------
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
    rng = _rng(seed, 0, index)
    ext = np.asarray(shape, float)
    lgg = index % 4 == 3  # no necrotic core (label 1) in these cases

    # brain: a slightly irregular ellipsoid filling most of the volume
    brain_centre = (ext - 1.0) / 2.0 + rng.uniform(-1.5, 1.5, 3)
    brain_radii = ext * np.array([0.42, 0.45, 0.42]) * rng.uniform(0.95, 1.05, 3)
    d_brain = _ellipsoid_distance(shape, brain_centre, brain_radii) + 0.04 * _smooth_noise(rng, shape, 6.0)
    brain = d_brain < 1.0

    # tumour: irregular edema blob, a compact core inside it, necrosis where the core is deep
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    tumour_centre = brain_centre + direction * rng.uniform(0.1, 0.4) * brain_radii
    edema_radii = ext * rng.uniform(0.2, 0.27) * rng.uniform(0.85, 1.15, 3)
    d_edema = _ellipsoid_distance(shape, tumour_centre, edema_radii) + 0.12 * _smooth_noise(rng, shape, 4.0)
    edema = (d_edema < 1.0) & brain
    core_centre = tumour_centre + rng.uniform(-0.1, 0.1, 3) * edema_radii
    core_radii = edema_radii * rng.uniform(0.5, 0.6) * rng.uniform(0.9, 1.1, 3)
    d_core = _ellipsoid_distance(shape, core_centre, core_radii) + 0.06 * _smooth_noise(rng, shape, 3.0)
    core = (d_core < 1.0) & edema
    ring_thickness = rng.uniform(2.0, 3.0)
    necrosis = ndimage.distance_transform_edt(core) > ring_thickness if not lgg else np.zeros(shape, bool)

    seg = np.zeros(shape, np.uint8)
    seg[edema] = 2
    seg[core] = 4
    seg[necrosis] = 1

    white_matter = 1.0 / (1.0 + np.exp(-3.0 * _smooth_noise(rng, shape, 2.5))) - 0.5
    images = {}
    for modality in _BRATS_MODALITIES:
        normal, c_edema, c_enh, c_nec = _BRATS_CONTRAST[modality]
        image = np.full(shape, normal) + _BRATS_WM_CONTRAST[modality] * white_matter
        image[seg == 2] = c_edema
        image[seg == 4] = c_enh
        image[seg == 1] = c_nec
        image = ndimage.gaussian_filter(image, 0.6)  # partial volume at region borders
        image *= 1.0 + 0.08 * _smooth_noise(rng, shape, 12.0)  # bias field
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
    num_cases = _check_count(num_cases, "num_cases")
    shape = _check_shape(shape, 3, "shape")
    root = os.fspath(root)
    for index in range(num_cases):
        case = f"Brats18_DEMO_{index}_1"
        folder = os.path.join(root, case)
        os.makedirs(folder, exist_ok=True)
        images, seg, affine = _brats_case(index, shape, seed)
        for modality, image in images.items():
            _save_nifti(os.path.join(folder, f"{case}_{modality}.nii.gz"), image, affine)
        _save_nifti(os.path.join(folder, f"{case}_seg.nii.gz"), seg, affine)
    return root


# --------------------------------------------------------------------------------------------
# MALC
# --------------------------------------------------------------------------------------------
def _malc_case(index: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = _rng(seed, 1, index)
    ext = np.asarray(shape, float)
    head_centre = (ext - 1.0) / 2.0 + rng.uniform(-1.0, 1.0, 3)
    d_head = _ellipsoid_distance(shape, head_centre, ext * 0.47) + 0.03 * _smooth_noise(rng, shape, 6.0)
    brain = d_head < 0.9
    scalp = (d_head >= 0.93) & (d_head < 1.0)

    image = np.zeros(shape)
    white_matter = 1.0 / (1.0 + np.exp(-3.0 * _smooth_noise(rng, shape, 2.0)))
    image[brain] = 0.45 + 0.1 * white_matter[brain]
    image[scalp] = 0.8
    label = np.zeros(shape, np.uint8)
    scale = rng.uniform(0.9, 1.1)
    offset = head_centre - (ext - 1.0) / 2.0
    blob = _smooth_noise(rng, shape, 2.0)
    for value, (centre, radii, intensity) in enumerate(_MALC_STRUCTURES, start=1):
        c = np.asarray(centre) * (ext - 1.0) + offset + rng.uniform(-1.5, 1.5, 3)
        r = np.maximum(np.asarray(radii) * ext * scale * rng.uniform(0.9, 1.1, 3), 1.5)
        region = (_ellipsoid_distance(shape, c, r) + 0.1 * blob < 1.0) & brain
        label[region] = value
        image[region] = intensity
    image = ndimage.gaussian_filter(image, 0.5)
    image *= 1.0 + 0.05 * _smooth_noise(rng, shape, 10.0)
    image += 0.02 * rng.standard_normal(shape)
    image = np.where(d_head < 1.0, np.maximum(image, 0.0), 0.0) * rng.uniform(80.0, 120.0)
    return image.astype(np.float32), label, _random_affine(rng, shape, (1.0, 1.0, 1.0))


def _write_images_masks(root, num_cases, shape, seed, make_case, names) -> str:
    """Write ``<root>/images/<image name>`` and ``<root>/masks/<mask name>`` for ``make_case(index, shape, seed)``.

    ``names(index)`` gives the (image, mask) file names; shared by the MALC and HVSMR generators.
    """
    num_cases = _check_count(num_cases, "num_cases")
    shape = _check_shape(shape, 3, "shape")
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    for index in range(num_cases):
        image, label, affine = make_case(index, shape, seed)
        image_name, mask_name = names(index)
        _save_nifti(os.path.join(root, "images", image_name), image, affine)
        _save_nifti(os.path.join(root, "masks", mask_name), label, affine)
    return root


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
    return _write_images_masks(
        root, num_cases, shape, seed, _malc_case, lambda i: (f"{1000 + i}_3.nii.gz", f"{1000 + i}_3.nii.gz")
    )


# --------------------------------------------------------------------------------------------
# HVSMR 2016
# --------------------------------------------------------------------------------------------
def _hvsmr_case(index: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = _rng(seed, 2, index)
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
        lungs |= _ellipsoid_distance(shape, c, ext * np.array([0.15, 0.3, 0.6])) < 1.0
    lungs &= body

    jitter = rng.uniform(-0.04, 0.04, 3) * ext
    scale = rng.uniform(0.9, 1.1)
    heart_centre = (ext - 1.0) / 2.0 + jitter
    lv_centre = heart_centre + np.array([0.08, 0.05, -0.07]) * ext
    rv_centre = heart_centre + np.array([-0.12, -0.08, -0.07]) * ext
    d_lv = _ellipsoid_distance(shape, lv_centre, ext * np.array([0.11, 0.14, 0.2]) * scale)
    d_rv = _ellipsoid_distance(shape, rv_centre, ext * np.array([0.1, 0.15, 0.18]) * scale)
    ventricles = (d_lv < 1.0) | (d_rv < 1.0)
    atria = (
        _ellipsoid_distance(
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
    image = image + 0.08 * np.where(body, _smooth_noise(rng, shape, 2.0), 0.0)
    image[lungs] = 0.06
    image[myocardium] = 0.5
    image[blood] = 1.0
    image = ndimage.gaussian_filter(image, 0.6)
    image *= 1.0 + 0.1 * _smooth_noise(rng, shape, 10.0)
    image += 0.03 * rng.standard_normal(shape)
    image = np.maximum(image, 0.0) * rng.uniform(200.0, 300.0)
    return image.astype(np.float32), label, _random_affine(rng, shape, spacing)


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
    return _write_images_masks(
        root,
        num_cases,
        shape,
        seed,
        _hvsmr_case,
        lambda i: (f"training_axial_crop_pat{i}.nii.gz", f"training_axial_crop_pat{i}-label.nii.gz"),
    )


# --------------------------------------------------------------------------------------------
# BUSI
# --------------------------------------------------------------------------------------------
def _busi_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Layered breast tissue: skin, subcutaneous fat, glandular tissue, muscle (echogenicity 0..1)."""
    rows = np.arange(size, dtype=float)[:, None]
    cols_noise = [ndimage.gaussian_filter1d(rng.standard_normal(size), size / 10.0, mode="reflect") for _ in range(3)]
    cols_noise = [n / (n.std() + 1e-12) for n in cols_noise]
    skin = 0.04 * size + 0.005 * size * cols_noise[0][None, :]
    fat = rng.uniform(0.18, 0.26) * size + 0.03 * size * cols_noise[1][None, :]
    muscle = rng.uniform(0.68, 0.78) * size + 0.03 * size * cols_noise[2][None, :]
    tissue = np.where(rows < skin, 0.85, np.where(rows < fat, 0.35, np.where(rows < muscle, 0.62, 0.45)))
    tissue = tissue + 0.1 * _smooth_noise(rng, (size, size), size / 40.0)
    striation = 0.06 * np.sin(2 * np.pi * rows / max(size / 20.0, 3.0) + 0.3 * cols_noise[2][None, :])
    tissue = np.where(rows >= muscle, tissue + striation, tissue)
    tissue *= np.exp(-0.35 * rows / size)  # attenuation with depth
    return ndimage.gaussian_filter(tissue, 1.0)


def _busi_lesion(
    rng: np.random.Generator, size: int, centre: np.ndarray, radii: np.ndarray, malignant: bool
) -> np.ndarray:
    """Binary lesion: a smooth oval (benign) or an irregular spiculated blob (malignant)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    dy, dx = (yy - centre[0]) / radii[0], (xx - centre[1]) / radii[1]
    rho, theta = np.hypot(dy, dx), np.arctan2(dy, dx)
    boundary = np.ones_like(theta)
    amplitude = 0.12 if malignant else 0.03
    for k in range(2, 6):
        boundary += amplitude / k * rng.standard_normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if malignant:
        for phi in rng.uniform(-np.pi, np.pi, rng.integers(7, 13)):
            delta = np.angle(np.exp(1j * (theta - phi)))  # wrapped angular distance
            boundary += rng.uniform(0.25, 0.5) * np.exp(-((delta / rng.uniform(0.07, 0.12)) ** 2))
    return rho < boundary


def _busi_image(
    rng: np.random.Generator, size: int, cls: str, satellite: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    tissue = _busi_background(rng, size)
    mask = np.zeros((size, size), bool)
    satellite_mask = None
    if cls != "normal":
        malignant = cls == "malignant"
        centre = np.array([rng.uniform(0.38, 0.55), rng.uniform(0.35, 0.65)]) * size
        if malignant:  # taller than wide
            ry = rng.uniform(0.13, 0.19) * size
            radii = np.array([ry, ry * rng.uniform(0.6, 0.85)])
        else:  # wider than tall
            rx = rng.uniform(0.14, 0.22) * size
            radii = np.array([rx * rng.uniform(0.55, 0.75), rx])
        mask = _busi_lesion(rng, size, centre, radii, malignant)
        lesions = [mask]
        if satellite:
            angle = rng.uniform(0, 2 * np.pi)
            sat_centre = centre + (radii.max() * 1.6 + 0.06 * size) * np.array([np.sin(angle) * 0.5, np.cos(angle)])
            sat_centre = np.clip(sat_centre, 0.1 * size, 0.9 * size)
            sat_radii = np.full(2, rng.uniform(0.035, 0.05) * size)
            satellite_mask = _busi_lesion(rng, size, sat_centre, sat_radii, False) & ~ndimage.binary_dilation(
                mask, iterations=2
            )
            lesions.append(satellite_mask)
        rows = np.arange(size, dtype=float)[:, None]
        for lesion in lesions:
            ys, xs = np.nonzero(lesion)
            if ys.size == 0:
                continue
            # posterior acoustic feature below the lesion: enhancement (benign) or shadowing (malignant)
            columns = np.zeros(size)
            columns[xs.min() : xs.max() + 1] = 1.0
            columns = ndimage.gaussian_filter1d(columns, 0.02 * size + 0.5)[None, :]
            depth = np.clip((rows - ys.max()) / (0.35 * size), 0.0, None)
            falloff = np.where(rows > ys.max(), np.exp(-depth), 0.0)
            factor = 0.45 if malignant else 1.5
            tissue = tissue * (1.0 + (factor - 1.0) * falloff * columns)
            soft = ndimage.gaussian_filter(lesion.astype(float), 1.0)
            tissue = tissue * (1.0 - soft) + soft * (0.08 if malignant else 0.18)
    # multiplicative speckle: Rayleigh noise with a short correlation, mean 1
    speckle = ndimage.gaussian_filter(rng.rayleigh(1.0, (size, size)), (0.5, 0.9))
    image = tissue * speckle / speckle.mean() * rng.uniform(0.8, 0.95)
    return _to_uint8(image), mask, satellite_mask


def make_busi_demo(
    root: str, num_per_class: int = 8, size: int = 128, seed: int = 0, include_normal: bool = True
) -> str:
    """Write a BUSI-like dataset ``<root>/{benign,malignant,normal}/<cls> (N).png``.

    Masks are 0/255 8-bit PNGs ``<cls> (N)_mask.png``; every fourth lesion image (N = 4, 8, ...)
    has a second lesion with its own ``<cls> (N)_mask_1.png``, normal images an all-zero mask.
    Images are 8-bit grayscale, except ``benign (2).png`` and ``benign (5).png`` (RGB with three
    identical channels) and ``benign (3).png`` (RGBA, opaque), like the quirks of the real data.

    Args:
        root: output folder.
        num_per_class: images per class (N runs from 1).
        size: image height and width in pixels, >= 32.
        seed: non-negative random seed.
        include_normal: also write the ``normal`` class.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: for a bad ``num_per_class``, ``size`` or ``seed``.
    """
    num_per_class = _check_count(num_per_class, "num_per_class")
    size = _check_count(size, "size", minimum=32)
    root = os.fspath(root)
    classes = _BUSI_CLASS_ORDER if include_normal else _BUSI_CLASS_ORDER[:2]
    for cls in classes:
        folder = os.path.join(root, cls)
        os.makedirs(folder, exist_ok=True)
        for n in range(1, num_per_class + 1):
            rng = _rng(seed, 3, _BUSI_CLASS_ORDER.index(cls) * 100_000 + n)
            satellite = cls != "normal" and n % 4 == 0
            image, mask, satellite_mask = _busi_image(rng, size, cls, satellite)
            stem = f"{cls} ({n})"
            if cls == "benign" and n in (2, 5):
                pil = Image.fromarray(np.repeat(image[..., None], 3, axis=-1), mode="RGB")
            elif cls == "benign" and n == 3:
                pil = Image.fromarray(np.dstack([image] * 3 + [np.full_like(image, 255)]), mode="RGBA")
            else:
                pil = Image.fromarray(image, mode="L")
            pil.save(os.path.join(folder, f"{stem}.png"))
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(os.path.join(folder, f"{stem}_mask.png"))
            if satellite_mask is not None:
                Image.fromarray(satellite_mask.astype(np.uint8) * 255, mode="L").save(
                    os.path.join(folder, f"{stem}_mask_1.png")
                )
    return root


# --------------------------------------------------------------------------------------------
# NIH ChestX-ray14
# --------------------------------------------------------------------------------------------
def _cxr_image(rng: np.random.Generator, size: int, findings: Sequence[str]) -> np.ndarray:
    """A frontal chest radiograph (opacity 0..1, bright = dense) with the given findings."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    body = ((xx - s / 2) / (0.46 * s)) ** 2 + ((yy - 0.62 * s) / (0.62 * s)) ** 2 < 1.0
    image = np.where(body, 0.55, 0.06)
    image = image + np.where(yy > 0.86 * s, 0.15, 0.0) * body  # abdomen below the diaphragm

    lungs = []
    for side in (-1.0, 1.0):  # image left is the patient's right
        cx = s / 2 + side * rng.uniform(0.19, 0.22) * s
        cy = rng.uniform(0.46, 0.5) * s
        rx, ry = rng.uniform(0.14, 0.16) * s, rng.uniform(0.3, 0.34) * s
        lung = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1.0
        dome = cy + 0.75 * ry - 0.08 * s * np.exp(-(((xx - cx) / rx) ** 2))  # diaphragm dome
        lungs.append((lung & (yy < dome), cx, cy, rx, ry, side))
    heart = ((xx - (s / 2 + 0.05 * s)) / (0.14 * s)) ** 2 + ((yy - 0.66 * s) / (0.13 * s)) ** 2 < 1.0
    vessels = 0.06 * _smooth_noise(rng, (size, size), 1.2) + 0.04 * _smooth_noise(rng, (size, size), 4.0)
    ribs = 0.06 * (np.cos(2 * np.pi * (yy + 0.9 * (xx - s / 2) ** 2 / s) / (0.09 * s)) > 0.5)
    for lung, cx, _, rx, _, _ in lungs:
        hilum = np.exp(-(((xx - (s / 2 + (cx - s / 2) * 0.5)) / rx) ** 2))
        image = np.where(lung & ~heart, 0.16 + vessels * (0.5 + hilum) + 0.05 * hilum + ribs, image)
    image = np.where(heart, 0.7, image)
    image = np.where(body & (np.abs(xx - s / 2) < 0.06 * s), np.maximum(image, 0.68), image)  # spine

    finding_set = set(findings)
    affected = rng.permutation(len(lungs))
    if "Effusion" in finding_set:
        lung, cx, cy, rx, ry, side = lungs[affected[0]]
        ys = np.nonzero(lung)[0]
        level = ys.max() - rng.uniform(0.25, 0.4) * (ys.max() - ys.min())
        lateral = np.clip(side * (xx - cx) / rx, -1.0, 1.0)  # +1 at the chest wall
        surface = level - 0.035 * s * (lateral + 1.0) ** 2  # meniscus rising laterally
        fluid = lung & (yy > surface)
        soft = ndimage.gaussian_filter(fluid.astype(float), 1.0)
        image = image * (1.0 - soft) + 0.78 * soft
    if "Pneumothorax" in finding_set:
        lung, cx, cy, rx, ry, side = lungs[affected[-1]]
        rho = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        apical = np.clip((cy - yy) / ry, 0.0, 1.0)  # 0 at mid-lung, 1 at the apex
        edge = 1.0 - rng.uniform(0.3, 0.45) * apical  # collapsed lung edge (visceral pleura)
        free_air = lung & (rho > edge) & (yy < cy + 0.1 * ry)
        pleura = lung & (np.abs(rho - edge) < 0.045) & (yy < cy + 0.1 * ry) & (apical > 0.05)
        image = np.where(free_air, 0.03, image)
        image = np.where(pleura, 0.62, image)
    if "Subcutaneous Emphysema" in finding_set:
        lung_any = np.zeros((size, size), bool)
        for lung, *_ in lungs:
            lung_any |= lung
        wall = body & ~ndimage.binary_dilation(lung_any, iterations=2) & (np.abs(xx - s / 2) > 0.3 * s)
        streaks = np.zeros((size, size))
        wall_points = np.argwhere(wall)
        for _ in range(int(rng.integers(10, 16))):
            y0, x0 = wall_points[rng.integers(len(wall_points))]
            angle = rng.uniform(-0.5, 0.5) + np.pi / 2
            length = rng.uniform(0.08, 0.16) * s
            t = np.linspace(0.0, 1.0, int(2 * length))
            py = np.clip(np.round(y0 + np.sin(angle) * length * (t - 0.5)), 0, size - 1).astype(int)
            px = np.clip(np.round(x0 + np.cos(angle) * length * (t - 0.5) * 0.4), 0, size - 1).astype(int)
            streaks[py, px] = 1.0
        streaks = ndimage.gaussian_filter(streaks, 0.7) * wall
        image = image - 0.5 * streaks / (streaks.max() + 1e-12)
    image = ndimage.gaussian_filter(image, 0.7)
    image = image * rng.uniform(0.9, 1.05) + 0.015 * rng.standard_normal((size, size))
    return _to_uint8(np.clip(image, 0.0, 1.0))


def _cxr_findings(rng: np.random.Generator, patient_type: str, num_images: int) -> list[str]:
    if patient_type == "No Finding":
        return ["No Finding"] * num_images
    if patient_type == "mixed":
        pool = ("Effusion|Pneumothorax", "Effusion", "Pneumothorax")
        return [pool[i % 3] for i in range(num_images)]
    findings = [patient_type if rng.random() < 0.75 else "No Finding" for _ in range(num_images)]
    if patient_type not in findings:
        findings[-1] = patient_type
    return findings


def make_chestxray14_demo(root: str, num_patients: int = 24, size: int = 128, seed: int = 0) -> str:
    """Write an NIH ChestX-ray14-like dataset ``<root>/images/*.png`` + ``<root>/Data_Entry_2017.csv``.

    Patients ``00000001``, ``00000002``, ... get 2-4 images each (``<pid>_<follow-up>.png``).
    Patient types cycle through never-diseased (all ``No Finding``), ``Effusion``,
    ``Pneumothorax``, ``Subcutaneous Emphysema`` (those patients also have some ``No Finding``
    follow-ups) and mixed patients with multi-label rows ``Effusion|Pneumothorax``. The CSV has
    the real header (including its unquoted brackets and trailing comma) and the real value
    formats (integer patient id, age, gender, view, original size and spacing).

    Args:
        root: output folder.
        num_patients: number of patients.
        size: image height and width in pixels, >= 32.
        seed: non-negative random seed.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: for a bad ``num_patients``, ``size`` or ``seed``.
    """
    num_patients = _check_count(num_patients, "num_patients")
    size = _check_count(size, "size", minimum=32)
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rows = [_CXR_HEADER]
    for pid in range(1, num_patients + 1):
        rng = _rng(seed, 4, pid)
        patient_type = _CXR_PATIENT_TYPES[(pid - 1) % len(_CXR_PATIENT_TYPES)]
        num_images = int(rng.integers(2, 5))
        age, gender = int(rng.integers(20, 85)), "MF"[int(rng.integers(2))]
        for follow_up, finding in enumerate(_cxr_findings(rng, patient_type, num_images)):
            name = f"{pid:08d}_{follow_up:03d}.png"
            image_rng = _rng(seed, 5, pid * 1000 + follow_up)
            Image.fromarray(_cxr_image(image_rng, size, finding.split("|")), mode="L").save(
                os.path.join(root, "images", name)
            )
            view = "PA" if image_rng.random() < 0.7 else "AP"
            width, height = int(image_rng.integers(2000, 3056)), int(image_rng.integers(2000, 3056))
            rows.append(f"{name},{finding},{follow_up},{pid},{age},{gender},{view},{width},{height},0.143,0.143,")
    with open(os.path.join(root, "Data_Entry_2017.csv"), "w", newline="") as f:
        f.write("\n".join(rows) + "\n")
    return root


# --------------------------------------------------------------------------------------------
# cached demo datasets
# --------------------------------------------------------------------------------------------
DEMO_DATASETS: dict[str, Callable[..., str]] = {
    "brats": make_brats_demo,
    "malc": make_malc_demo,
    "hvsmr": make_hvsmr_demo,
    "busi": make_busi_demo,
    "chestxray14": make_chestxray14_demo,
}


def demo_root() -> str:
    """Folder holding the cached demo datasets.

    Returns:
        ``$PIPELINES_DEMO_DIR`` if set, else ``~/.cache/attention-mis/demo``.
    """
    return os.path.expanduser(
        os.environ.get("PIPELINES_DEMO_DIR") or os.path.join("~", ".cache", "attention-mis", "demo")
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_marker(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_demo_dataset(name: str, root: str | None = None, **kwargs: Any) -> str:
    """Generate a demo dataset unless an identical one is already complete on disk.

    A complete dataset holds ``.demo_complete``, written last, with the generator's name, its
    full arguments (defaults filled in) and :data:`DEMO_VERSION`. When the marker matches, nothing
    is done. Otherwise the dataset is (re)generated: a folder known to hold an older or
    interrupted demo generation (it has a ``.demo_complete`` or ``.demo_incomplete`` file) is
    emptied first; any other folder is written into without deleting anything. Concurrent calls
    on the same root are serialised with a lock file next to it (``<root>.lock``).

    Args:
        name: one of ``"brats"``, ``"malc"``, ``"hvsmr"``, ``"busi"``, ``"chestxray14"``.
        root: output folder; defaults to ``os.path.join(demo_root(), name)``.
        **kwargs: arguments of the matching ``make_<name>_demo`` (``seed``, sizes, ...).

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: for an unknown ``name`` or arguments the generator does not take.
    """
    if name not in DEMO_DATASETS:
        raise ValueError(f"unknown demo dataset {name!r}; expected one of {sorted(DEMO_DATASETS)}.")
    generator = DEMO_DATASETS[name]
    try:
        bound = inspect.signature(generator).bind(os.devnull, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for demo dataset {name!r}: {e}.") from e
    bound.apply_defaults()
    params = {k: _jsonable(v) for k, v in bound.arguments.items() if k != "root"}
    expected = {"name": name, "version": DEMO_VERSION, "kwargs": params}

    root = os.path.abspath(os.fspath(root) if root is not None else os.path.join(demo_root(), name))
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with _file_lock(root.rstrip(os.sep) + ".lock"):
        marker = os.path.join(root, DEMO_MARKER)
        if _read_marker(marker) == expected:
            return root
        partial = os.path.join(root, _DEMO_PARTIAL)
        if os.path.isdir(root) and (os.path.exists(marker) or os.path.exists(partial)):
            shutil.rmtree(root)  # an older or interrupted demo generation: start afresh
        os.makedirs(root, exist_ok=True)
        with open(partial, "w") as f:
            json.dump(expected, f)
        generator(root, **kwargs)
        with open(marker, "w") as f:
            json.dump(expected, f)
        os.remove(partial)
    return root
