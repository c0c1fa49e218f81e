"""Synthetic Montgomery County chest X-ray demo data (lung masks).

Written in the layout :func:`~pipelines.data.datalists.montgomery_datalist` reads: ``<root>/CXR_png/<id>.png``,
``<root>/ManualMask/leftMask/<id>.png`` and ``<root>/ManualMask/rightMask/<id>.png``, ids ``MCUCXR_<NNNN>_<0|1>``
as in the real set (``_1`` abnormal). The radiographs are those of the NIH demo
(:func:`~pipelines.data.demo.chestxray14.chest_radiograph`); abnormal cases have an effusion or a pneumothorax. The
real set has portrait (4020 x 4892) and landscape (4892 x 4020) images: the demo has both shapes, portrait by
cropping the sides of the square radiograph (``round(0.82 * size)`` columns), landscape by padding them with air.
The lung mask is split into its two lungs by the image column of each connected component: the image's left half
is the patient's right lung (``rightMask``), its right half the patient's left lung (``leftMask``).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from skimage.measure import label as label_components

from .chestxray14 import chest_radiograph
from .common import check_count, seeded_rng

__all__ = ["make_montgomery_demo"]

_ABNORMAL_FINDINGS = (("Effusion",), ("Pneumothorax",))
_ASPECT = 0.82  # width / height of the real portrait images (4020 / 4892)


def _split_lungs(lungs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(left, right)`` masks of the patient's lungs: components centred in the image's right half are the
    patient's left lung."""
    components = label_components(lungs, connectivity=2)
    left, right = np.zeros_like(lungs), np.zeros_like(lungs)
    middle = lungs.shape[1] / 2.0
    for index in range(1, int(components.max()) + 1):
        component = components == index
        if np.nonzero(component)[1].mean() + 0.5 >= middle:
            left |= component
        else:
            right |= component
    return left, right


def _reshape(arrays: list[np.ndarray], portrait: bool, fill: list[int]) -> list[np.ndarray]:
    """Crop (portrait) or pad (landscape) the columns of square arrays symmetrically."""
    size = arrays[0].shape[0]
    if portrait:
        width = int(round(_ASPECT * size))
        start = (size - width) // 2
        return [a[:, start : start + width] for a in arrays]
    width = int(round(size / _ASPECT))
    before = (width - size) // 2
    after = width - size - before
    return [np.pad(a, ((0, 0), (before, after)), constant_values=v) for a, v in zip(arrays, fill)]


def make_montgomery_demo(root: str, num_cases: int = 24, size: int = 128, seed: int = 0) -> str:
    """Write a Montgomery-like lung-mask dataset.

    Case ``n`` (1-based) is ``MCUCXR_<nnnn>_<t>.png``: every third case (n = 3, 6, ...) is abnormal (``t = 1``,
    alternately an effusion and a pneumothorax), the others normal; every fourth case (n = 4, 8, ...) is landscape,
    the others portrait. Images are 8-bit grayscale, masks 8-bit 0/255, both ``size`` pixels high.

    Args:
        root: output folder.
        num_cases: number of cases.
        size: image height in pixels, >= 32.
        seed: non-negative random seed.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: for a bad ``num_cases``, ``size`` or ``seed``.
    """
    num_cases = check_count(num_cases, "num_cases")
    size = check_count(size, "size", minimum=32)
    root = os.fspath(root)
    folders = [os.path.join(root, "CXR_png"), *(os.path.join(root, "ManualMask", s) for s in ("leftMask", "rightMask"))]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    for n in range(1, num_cases + 1):
        rng = seeded_rng(seed, 6, n)
        abnormal = n % 3 == 0
        findings = _ABNORMAL_FINDINGS[(n // 3) % 2] if abnormal else ("No Finding",)
        image, lungs = chest_radiograph(rng, size, findings)
        left, right = _split_lungs(lungs)
        air = int(np.percentile(image[:, : max(size // 32, 1)], 50))
        image, left, right = _reshape([image, left, right], portrait=n % 4 != 0, fill=[air, 0, 0])
        name = f"MCUCXR_{n:04d}_{int(abnormal)}.png"
        Image.fromarray(image, mode="L").save(os.path.join(folders[0], name))
        for folder, mask in zip(folders[1:], (left, right)):
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(os.path.join(folder, name))
    return root
