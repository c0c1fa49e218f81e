"""Synthetic BUSI demo data.

Written in the layout :func:`~pipelines.data.datalists.busi_datalist` reads,
``<root>/{benign,malignant,normal}/<cls> (N).png`` with ``<cls> (N)_mask.png`` and sometimes
``<cls> (N)_mask_1.png``: speckled ultrasound with smooth oval benign lesions (posterior
enhancement) and irregular, spiculated, taller-than-wide malignant lesions (posterior shadowing).
Like the real data, a few images are RGB or RGBA PNGs.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy import ndimage

from ..datalists.busi import busi_class_names
from .common import check_count, seeded_rng, smooth_noise, to_uint8

__all__ = ["make_busi_demo"]

# Index of each class's random stream (not the label order of BUSI_CLASSES); fixed, so that a class's
# images do not depend on which classes are written.
_BUSI_STREAMS = ("benign", "malignant", "normal")


def _busi_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Layered breast tissue: skin, subcutaneous fat, glandular tissue, muscle (echogenicity 0..1)."""
    rows = np.arange(size, dtype=float)[:, None]
    cols_noise = [ndimage.gaussian_filter1d(rng.standard_normal(size), size / 10.0, mode="reflect") for _ in range(3)]
    cols_noise = [n / (n.std() + 1e-12) for n in cols_noise]
    skin = 0.04 * size + 0.005 * size * cols_noise[0][None, :]
    fat = rng.uniform(0.18, 0.26) * size + 0.03 * size * cols_noise[1][None, :]
    muscle = rng.uniform(0.68, 0.78) * size + 0.03 * size * cols_noise[2][None, :]
    tissue = np.where(rows < skin, 0.85, np.where(rows < fat, 0.35, np.where(rows < muscle, 0.62, 0.45)))
    tissue = tissue + 0.1 * smooth_noise(rng, (size, size), size / 40.0)
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
    return to_uint8(image), mask, satellite_mask


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
    num_per_class = check_count(num_per_class, "num_per_class")
    size = check_count(size, "size", minimum=32)
    root = os.fspath(root)
    for cls in busi_class_names(include_normal):
        folder = os.path.join(root, cls)
        os.makedirs(folder, exist_ok=True)
        for n in range(1, num_per_class + 1):
            rng = seeded_rng(seed, 3, _BUSI_STREAMS.index(cls) * 100_000 + n)
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
