"""Datalists of ``images/`` + ``masks/`` NIfTI datasets (MALC, HVSMR 2016) and of plain image folders.

On-disk layout: ``<root>/images/<case>.nii.gz`` with the mask ``<root>/masks/<case>.nii.gz`` or
``<root>/masks/<case><suffix>.nii.gz`` (suffix in :data:`MASK_SUFFIXES`; ``.nii`` is accepted too).
MALC (MICCAI 2012 multi-atlas labelling) names both files ``<id>.nii.gz`` (or the mask
``<id>_glm.nii.gz``) with labels 0..10; HVSMR 2016 uses ``training_axial_crop_pat<N>.nii.gz`` with
``training_axial_crop_pat<N>-label.nii.gz`` and labels 0 background, 1 myocardium, 2 blood pool.
:func:`image_folder_datalist` lists the volumes to segment at inference: a plain folder of NIfTI files, or a
dataset root (its ``images/`` folder).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import DatasetError
from .common import (
    check_label_values,
    check_root,
    check_same_grid,
    listdir,
    nifti_header,
    nifti_stem,
    sorted_by_case,
)

__all__ = [
    "HVSMR_LABELS",
    "MALC_LABELS",
    "MASK_SUFFIXES",
    "hvsmr_datalist",
    "image_folder_datalist",
    "malc_datalist",
    "segmentation_datalist",
]

#: MALC: background and ten structures.
MALC_LABELS = tuple(range(11))
#: HVSMR: background, myocardium, blood pool.
HVSMR_LABELS = (0, 1, 2)
#: Suffixes a mask file name may add to its image's name in ``<root>/masks`` (MALC uses
#: ``_glm``, HVSMR 2016 ``-label``).
MASK_SUFFIXES = ("_mask", "-label", "_label", "_seg", "_glm")


def _nifti_files(folder: str) -> dict[str, str]:
    """``{stem: path}`` of the NIfTI files of a folder (DatasetError if two share a stem)."""
    files: dict[str, str] = {}
    for name in listdir(folder):
        stem = nifti_stem(name)
        path = os.path.join(folder, name)
        if stem is None or not os.path.isfile(path):
            continue
        if stem in files:
            raise DatasetError(f"{files[stem]} and {path} have the same case name {stem!r}.")
        files[stem] = path
    return files


def image_folder_datalist(folder: str) -> list[dict]:
    """Datalist of the NIfTI volumes to segment (no labels): a plain folder of volumes or a dataset root.

    A folder holding NIfTI files is listed as it is; a folder holding none but an ``images/`` subfolder (the
    ``<root>/images`` + ``<root>/masks`` layout of :func:`segmentation_datalist`) is read from ``images/``
    (``masks/`` is ignored).

    Args:
        folder: a folder of ``*.nii.gz`` / ``*.nii`` files, or a dataset root with ``images/``.

    Returns:
        ``[{"image": path, "case_id": stem}, ...]`` sorted by case id.

    Raises:
        DatasetError: when the folder is missing, holds no NIfTI file (nor an ``images/`` folder with one), or a file
            is unreadable or truncated.
    """
    layout = "<folder>/*.nii.gz or <root>/images/*.nii.gz"
    folder = check_root(folder, "image", layout)
    files = _nifti_files(folder)
    if not files and os.path.isdir(os.path.join(folder, "images")):
        folder = os.path.join(folder, "images")
        files = _nifti_files(folder)
    if not files:
        raise DatasetError(f"{folder}: no NIfTI images (*.nii.gz, *.nii) found; expected {layout}.")
    for path in files.values():
        nifti_header(path)
    return sorted_by_case({"image": path, "case_id": stem} for stem, path in files.items())


def segmentation_datalist(
    root: str, allowed_labels: Sequence[int], require_label: bool = True, check_labels: bool = True
) -> list[dict]:
    """Scan and validate an ``<root>/images`` + ``<root>/masks`` NIfTI dataset (MALC, HVSMR).

    Pairing rule: the mask of ``images/<stem>.nii[.gz]`` is ``masks/<stem>.nii[.gz]`` or
    ``masks/<stem><suffix>.nii[.gz]`` with ``suffix`` in :data:`MASK_SUFFIXES`
    (``_mask``, ``-label``, ``_label``, ``_seg``, ``_glm``); exactly one candidate may exist.
    A mask that pairs with no image is an error (usually a naming mistake).

    Args:
        root: dataset folder holding ``images`` and ``masks``.
        allowed_labels: the label values a mask may contain.
        require_label: a missing mask (or ``masks`` folder) is an error; when False such items
            have no ``"label"`` key.
        check_labels: read the masks and reject values outside ``allowed_labels``.

    Returns:
        Items ``{"image": path, "label": path, "case_id": stem}`` sorted by case id.

    Raises:
        DatasetError: missing root or folders, no images, a missing, ambiguous or orphan mask,
            an unreadable or truncated file, a shape or affine mismatch, unexpected label values.
    """
    layout = "<root>/images/<case>.nii.gz with <root>/masks/<case>.nii.gz (or <case>_mask, -label, _seg, _glm)"
    root = check_root(root, "segmentation dataset", layout)
    image_dir, mask_dir = os.path.join(root, "images"), os.path.join(root, "masks")
    if not os.path.isdir(image_dir):
        raise DatasetError(f"image folder {image_dir} does not exist; expected {layout}.")
    has_masks = os.path.isdir(mask_dir)
    if require_label and not has_masks:
        raise DatasetError(f"mask folder {mask_dir} does not exist; expected {layout}.")
    images = _nifti_files(image_dir)
    if not images:
        raise DatasetError(f"no NIfTI images (*.nii.gz, *.nii) found in {image_dir}; expected {layout}.")
    masks = _nifti_files(mask_dir) if has_masks else {}

    used: set[str] = set()
    items = []
    for stem, image in images.items():
        candidates = [s for s in [stem] + [stem + suffix for suffix in MASK_SUFFIXES] if s in masks]
        if len(candidates) > 1:
            raise DatasetError(f"{image} has several masks: {[masks[c] for c in candidates]}.")
        item: dict[str, Any] = {"image": image, "case_id": stem}
        header = nifti_header(image)
        if candidates:
            label = masks[candidates[0]]
            used.add(candidates[0])
            check_same_grid(image, header, label, nifti_header(label))
            if check_labels:
                check_label_values(label, allowed_labels)
            item["label"] = label
        elif require_label:
            raise DatasetError(
                f"{image} has no mask: expected {os.path.join(mask_dir, stem + '.nii.gz')} "
                f"(or a suffix {MASK_SUFFIXES})."
            )
        items.append(item)
    orphans = sorted(set(masks) - used)
    if orphans:
        raise DatasetError(
            f"{masks[orphans[0]]} matches no image in {image_dir} "
            f"(pairing: same name, optionally with a suffix {MASK_SUFFIXES})."
        )
    return sorted_by_case(items)


def malc_datalist(root: str, **kwargs: Any) -> list[dict]:
    """:func:`segmentation_datalist` with the MALC labels 0..10 (``kwargs`` are passed on)."""
    return segmentation_datalist(root, MALC_LABELS, **kwargs)


def hvsmr_datalist(root: str, **kwargs: Any) -> list[dict]:
    """:func:`segmentation_datalist` with the HVSMR labels 0, 1, 2 (``kwargs`` are passed on)."""
    return segmentation_datalist(root, HVSMR_LABELS, **kwargs)
