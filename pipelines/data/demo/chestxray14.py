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

__all__ = [
    "SHORTCUT_TEST_MARKERS",
    "chest_radiograph",
    "make_chestxray14_demo",
    "make_chestxray14_shortcut_dataset",
    "make_chestxray14_shortcut_demo",
]

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


def chest_radiograph(
    rng: np.random.Generator, size: int, findings: Sequence[str], strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A frontal chest radiograph with the given findings and its lung mask.

    Args:
        rng: the image's random generator.
        size: height and width in pixels.
        findings: finding names (``No Finding``, ``Effusion``, ``Pneumothorax``, ``Subcutaneous Emphysema``).
        strength: opacity of the findings in ``[0, 1]``: 1 draws them fully (the default), smaller values blend them
            into the normal anatomy (subtler findings, e.g. for :func:`make_chestxray14_shortcut_demo`).

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
        soft = ndimage.gaussian_filter(fluid.astype(float), 1.0) * strength
        image = image * (1.0 - soft) + 0.78 * soft
    if "Pneumothorax" in finding_set:
        lung, cx, cy, rx, ry, side = lungs[affected[-1]]
        rho = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
        apical = np.clip((cy - yy) / ry, 0.0, 1.0)  # 0 at mid-lung, 1 at the apex
        edge = 1.0 - rng.uniform(0.3, 0.45) * apical  # collapsed lung edge (visceral pleura)
        free_air = lung & (rho > edge) & (yy < cy + 0.1 * ry)
        pleura = lung & (np.abs(rho - edge) < 0.045) & (yy < cy + 0.1 * ry) & (apical > 0.05)
        image = np.where(free_air, (1.0 - strength) * image + strength * 0.03, image)
        image = np.where(pleura, (1.0 - strength) * image + strength * 0.62, image)
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
        image = image - strength * 0.5 * streaks / (streaks.max() + 1e-12)
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


# --------------------------------------------------------------------------------------------- shortcut demo
#: Where the shortcut marker sits in the test split (see :func:`make_chestxray14_shortcut_demo`).
SHORTCUT_TEST_MARKERS = ("reversed", "random", "none")
#: Folder names inside a cached shortcut demo (:func:`make_chestxray14_shortcut_dataset`).
SHORTCUT_RAW_DIR, SHORTCUT_PREPARED_DIR = "raw", "prepared"


def _shortcut_marker(image: np.ndarray, rng: np.random.Generator, size: int, marker_size: float) -> np.ndarray:
    """Burn a saturated square (like a radiographer's side letter) of side ``marker_size * size`` into a top corner
    of ``image``, 1-2% of the image size below its top and 2-5% from its side: it stays above the lung fields (and
    their box), which start below 12% of the height."""
    side = max(2, round(marker_size * size))
    top = round(0.01 * size) + int(rng.integers(0, max(1, round(0.01 * size)) + 1))
    left = round(0.02 * size) + int(rng.integers(0, max(1, round(0.03 * size)) + 1))
    if rng.random() < 0.5:  # the right corner
        left = size - left - side
    out = image.copy()
    out[top : top + side, left : left + side] = 255
    return out


def _shortcut_entries(task_classes: Sequence[str], num_patients: int, seed: int) -> list[dict]:
    """Metadata rows: patients cycle through never-diseased (No Finding) and one patient per task disease, with 1-3
    single-label images each (``{"image", "findings", "patient_id"}``)."""
    types = [task_classes[0]] * (len(task_classes) - 1) + list(task_classes[1:])  # 1:1 normal : disease patients
    entries = []
    for pid in range(1, num_patients + 1):
        rng = seeded_rng(seed, 6, pid)
        finding = types[(pid - 1) % len(types)]
        for follow_up in range(int(rng.integers(1, 4))):
            name = f"{pid:08d}_{follow_up:03d}.png"
            entries.append({"image": name, "findings": [finding], "patient_id": f"{pid:08d}"})
    return entries


def make_chestxray14_shortcut_demo(
    root: str,
    task: str = "ne",
    num_patients: int = 160,
    size: int = 128,
    seed: int = 0,
    strength: float = 0.4,
    marker_size: float = 0.09,
    marker_rate: float = 1.0,
    test_marker: str = "reversed",
) -> str:
    """Write a raw NIH ChestX-ray14-like dataset with a *shortcut*: a burnt-in marker that predicts the label in the
    training and validation splits but not in the test split.

    Layout (the raw NIH download, as :func:`make_chestxray14_demo`): ``<root>/images/<pid>_<fu>.png``,
    ``<root>/Data_Entry_2017.csv`` (the real header), and, a demo convenience that the real download does not have,
    ``<root>/lung_masks/<Image Index>`` (the true lung fields, 0/255 PNG).

    Findings sit in their anatomical regions (:func:`chest_radiograph`, drawn at ``strength``: subtle, so harder to
    learn than the marker). The marker is a bright square in a top corner of the image, outside the lungs and their
    box. Which images carry it depends on the split that :func:`~pipelines.data.prepare.plan_chestxray14_split`
    (``task``, ``seed``) gives each image, planned before any image is drawn:

    * train and val: every disease image (a fraction ``marker_rate`` of them) and no No Finding image, so a
      classifier that looks at the marker is right on the development data;
    * test (``test_marker``): ``"reversed"`` (default) the marker on every No Finding image and on no disease image,
      so the shortcut is wrong on every test image; ``"random"`` on half the images, whatever their label;
      ``"none"`` on no image;
    * images the plan leaves out (class balancing): no marker.

    A CE-only classifier takes the shortcut (high training accuracy, test accuracy far below chance with the
    reversed marker); the Grad-CAM attention loss, which asks the disease class's evidence to lie in its lung
    region, makes it use the finding.

    Args:
        root: output folder.
        task: a task of :data:`transforms.chestxray.CXR_TASKS` (``ne``, ``np``, ``nep``, ``neps``).
        num_patients: number of patients (alternately never-diseased and diseased, 1-3 images each).
        size: image height and width in pixels, >= 32.
        seed: non-negative seed of the images and of the split plan.
        strength: opacity of the findings in ``(0, 1]``.
        marker_size: side of the marker as a fraction of the image size, in ``(0, 0.09]``.
        marker_rate: fraction of the train/val disease images with the marker, in ``[0, 1]``.
        test_marker: ``"reversed"``, ``"random"`` or ``"none"``.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: a bad argument (unknown task, sizes or rates out of range).
    """
    from transforms.chestxray import CXR_TASKS

    from ..prepare.chestxray14 import plan_chestxray14_split

    if task not in CXR_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(CXR_TASKS)}.")
    num_patients = check_count(num_patients, "num_patients", minimum=2 * len(CXR_TASKS[task]))
    size = check_count(size, "size", minimum=32)
    if not 0.0 < float(strength) <= 1.0:
        raise ValueError(f"strength must lie in (0, 1], got {strength!r}.")
    if not 0.0 < float(marker_size) <= 0.09:
        raise ValueError(f"marker_size must lie in (0, 0.09] (the marker stays above the lungs), got {marker_size!r}.")
    if not 0.0 <= float(marker_rate) <= 1.0:
        raise ValueError(f"marker_rate must lie in [0, 1], got {marker_rate!r}.")
    if test_marker not in SHORTCUT_TEST_MARKERS:
        raise ValueError(f"test_marker must be one of {SHORTCUT_TEST_MARKERS}, got {test_marker!r}.")
    classes = CXR_TASKS[task]
    entries = _shortcut_entries(classes, num_patients, seed)
    plan = plan_chestxray14_split(entries, task, seed=seed)

    root = os.fspath(root)
    for folder in ("images", "lung_masks"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rows = [_CXR_HEADER]
    for entry in entries:
        name, finding = entry["image"], entry["findings"][0]
        pid, follow_up = (int(part) for part in name[:-4].split("_"))
        image_rng = seeded_rng(seed, 7, pid * 1000 + follow_up)
        image, lungs = chest_radiograph(image_rng, size, [finding], strength=float(strength))
        marker_rng = seeded_rng(seed, 8, pid * 1000 + follow_up)
        split = plan[name][0] if name in plan else None
        disease = finding != classes[0]
        if split in ("train", "val"):
            marked = disease and marker_rng.random() < marker_rate
        elif split == "test":
            marked = {"reversed": not disease, "random": marker_rng.random() < 0.5, "none": False}[test_marker]
        else:
            marked = False
        if marked:
            image = _shortcut_marker(image, marker_rng, size, float(marker_size))
        Image.fromarray(image, mode="L").save(os.path.join(root, "images", name))
        Image.fromarray((lungs * 255).astype(np.uint8), mode="L").save(os.path.join(root, "lung_masks", name))
        age, gender = 20 + pid % 60, "MF"[pid % 2]
        rows.append(f"{name},{finding},{follow_up},{pid},{age},{gender},PA,{2 * size},{2 * size},0.143,0.143,")
    with open(os.path.join(root, CHESTXRAY14_CSV), "w", newline="") as f:
        f.write("\n".join(rows) + "\n")
    return root


def make_chestxray14_shortcut_dataset(
    root: str,
    task: str = "ne",
    num_patients: int = 160,
    size: int = 128,
    seed: int = 0,
    strength: float = 0.4,
    marker_size: float = 0.09,
    marker_rate: float = 1.0,
    test_marker: str = "reversed",
) -> str:
    """The shortcut demo, raw and prepared: what ``ensure_demo_dataset("chestxray14_shortcut", task=...)`` caches.

    Writes the raw dataset to ``<root>/raw`` (:func:`make_chestxray14_shortcut_demo`), prepares ``task`` into
    ``<root>/prepared/<task>`` (:func:`~pipelines.data.prepare.prepare_chestxray14`, copies) and writes its
    ``lung_boxes.csv`` from the true lung masks (:func:`~pipelines.predictors.lung_boxes.lung_boxes_from_masks`;
    a real dataset gets it from the lung segmentation bundle).

    Args:
        root: output folder.
        task, num_patients, size, strength, marker_size, marker_rate, test_marker: see
            :func:`make_chestxray14_shortcut_demo`.
        seed: seed of the images and of the split (the same for both, so the marker follows the prepared split).

    Returns:
        the prepared task folder ``<root>/prepared/<task>``.
    """
    from ...predictors.lung_boxes import lung_boxes_from_masks
    from ..prepare.chestxray14 import prepare_chestxray14

    root = os.fspath(root)
    raw = make_chestxray14_shortcut_demo(
        os.path.join(root, SHORTCUT_RAW_DIR), task=task, num_patients=num_patients, size=size, seed=seed,
        strength=strength, marker_size=marker_size, marker_rate=marker_rate, test_marker=test_marker,
    )
    task_dir = prepare_chestxray14(raw, os.path.join(root, SHORTCUT_PREPARED_DIR), task, seed=seed, link=False,
                                   overwrite=True)

    def lung_mask(image: str) -> np.ndarray:
        with Image.open(os.path.join(raw, "lung_masks", os.path.basename(image))) as mask:
            return np.asarray(mask, dtype=np.float64) / 255.0

    lung_boxes_from_masks(task_dir, lung_mask, overwrite=True)
    return task_dir
