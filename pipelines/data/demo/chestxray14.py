"""Synthetic NIH ChestX-ray14 demo data.

Written in the layout :func:`~pipelines.data.datalists.chestxray14_datalist` reads,
``<root>/images/<pid>_<fu>.png`` and ``<root>/Data_Entry_2017.csv``: radiograph-like thoraxes with
basal effusions (meniscus), apical pneumothoraces (pleural line) and subcutaneous emphysema (dark
streaks in the chest wall).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from ..datalists.chestxray14 import CHESTXRAY14_CSV
from .common import check_count, seeded_rng, smooth_noise, to_uint8

__all__ = ["chest_radiograph", "make_chestxray14_demo"]

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


def chest_radiograph(rng: np.random.Generator, size: int, findings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A frontal chest radiograph with the given findings and its lung mask.

    Returns:
        ``(image, lungs)``: the radiograph as ``uint8`` ``(size, size)`` (bright = dense) and the boolean mask of
        both lung fields ``(size, size)`` (below the apices, above the diaphragm domes, outside the heart shadow).
    """
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
    vessels = 0.06 * smooth_noise(rng, (size, size), 1.2) + 0.04 * smooth_noise(rng, (size, size), 4.0)
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
    lung_mask = np.zeros((size, size), bool)
    for lung, *_ in lungs:
        lung_mask |= lung
    return to_uint8(np.clip(image, 0.0, 1.0)), lung_mask & ~heart


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
    num_patients = check_count(num_patients, "num_patients")
    size = check_count(size, "size", minimum=32)
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    rows = [_CXR_HEADER]
    for pid in range(1, num_patients + 1):
        rng = seeded_rng(seed, 4, pid)
        patient_type = _CXR_PATIENT_TYPES[(pid - 1) % len(_CXR_PATIENT_TYPES)]
        num_images = int(rng.integers(2, 5))
        age, gender = int(rng.integers(20, 85)), "MF"[int(rng.integers(2))]
        for follow_up, finding in enumerate(_cxr_findings(rng, patient_type, num_images)):
            name = f"{pid:08d}_{follow_up:03d}.png"
            image_rng = seeded_rng(seed, 5, pid * 1000 + follow_up)
            Image.fromarray(chest_radiograph(image_rng, size, finding.split("|"))[0], mode="L").save(
                os.path.join(root, "images", name)
            )
            view = "PA" if image_rng.random() < 0.7 else "AP"
            width, height = int(image_rng.integers(2000, 3056)), int(image_rng.integers(2000, 3056))
            rows.append(f"{name},{finding},{follow_up},{pid},{age},{gender},{view},{width},{height},0.143,0.143,")
    with open(os.path.join(root, CHESTXRAY14_CSV), "w", newline="") as f:
        f.write("\n".join(rows) + "\n")
    return root
