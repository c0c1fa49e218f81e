"""BraTS 2018 datalist.

On-disk layout: one folder per case holding its four MR modalities and the segmentation,
``<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz``, or the official download with the case
folders grouped by grade, ``<root>/{HGG,LGG}/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz``
(``.nii`` files are accepted too). For inference the volumes may also lie directly in the folder, several cases
side by side (``<folder>/<Case>_{t1,t1ce,t2,flair}.nii.gz``; a single case folder is the one-case instance).
Segmentation labels are 0 background, 1 necrotic/non-enhancing
core, 2 edema and 4 enhancing tumour. Shapes and affines are checked from the headers; the
segmentations are read only when ``check_labels`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import DatasetError
from .common import (
    NIFTI_EXTENSIONS,
    check_label_values,
    check_root,
    check_same_grid,
    listdir,
    nifti_header,
    nifti_stem,
    sorted_by_case,
)

__all__ = ["BRATS_LABELS", "BRATS_MODALITIES", "brats_datalist"]

#: Channel order of a BraTS ``"image"`` item.
BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
#: BraTS label values: 0 background, 1 necrotic/non-enhancing core, 2 edema, 4 enhancing tumour.
BRATS_LABELS = (0, 1, 2, 4)

_BRATS_LAYOUT = (
    "<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz or the official download "
    "<root>/{HGG,LGG}/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz"
)


def _brats_file(folder: str, case: str, key: str, names: Sequence[str]) -> str | None:
    """Path of the ``key`` volume (modality or ``seg``) of a case folder, or None."""
    for ext in NIFTI_EXTENSIONS:
        if f"{case}_{key}{ext}" in names:
            return os.path.join(folder, f"{case}_{key}{ext}")
    candidates = [n for n in names if (nifti_stem(n) or "").endswith(f"_{key}")]
    if len(candidates) > 1:
        raise DatasetError(f"case folder {folder} has several '{key}' volumes: {candidates}.")
    return os.path.join(folder, candidates[0]) if candidates else None


def _is_brats_case(names: Sequence[str]) -> bool:
    keys = (*BRATS_MODALITIES, "seg")
    return any((nifti_stem(n) or "").endswith(tuple(f"_{k}" for k in keys)) for n in names)


def _case_key(name: str) -> tuple[str, str] | None:
    """``(case, key)`` of a file named ``<case>_<key>.nii[.gz]`` with ``key`` a modality or ``seg``, else None."""
    stem = nifti_stem(name) or ""
    for key in sorted((*BRATS_MODALITIES, "seg"), key=len, reverse=True):  # t1ce before t1
        if stem.endswith(f"_{key}") and len(stem) > len(key) + 1:
            return stem[: -len(key) - 1], key
    return None


def _flat_cases(root: str) -> list[tuple[str, str, list[str]]]:
    """``(case, root, file names)`` of the cases whose volumes lie directly in ``root``, grouped by name prefix."""
    groups: dict[str, list[str]] = {}
    for name in listdir(root):
        found = _case_key(name)
        if found is not None and os.path.isfile(os.path.join(root, name)):
            groups.setdefault(found[0], []).append(name)
    return [(case, root, names) for case, names in sorted(groups.items())]


def _brats_case_folders(root: str) -> list[str]:
    """Case folders at depth 1 (``<root>/<Case>``) or 2 (``<root>/{HGG,LGG}/<Case>``)."""
    found = []
    for name in listdir(root):
        level1 = os.path.join(root, name)
        if not os.path.isdir(level1):
            continue
        names = listdir(level1)
        if _is_brats_case(names):
            found.append(level1)
            continue
        for sub in names:
            level2 = os.path.join(level1, sub)
            if os.path.isdir(level2) and _is_brats_case(listdir(level2)):
                found.append(level2)
    return found


def brats_datalist(root: str, require_label: bool = True, check_labels: bool = True) -> list[dict]:
    """Scan and validate a BraTS 2018 dataset.

    Accepts ``<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz`` and the official download
    ``<root>/{HGG,LGG}/<Case>/...`` (case folders are searched up to two levels deep; ``.nii``
    files are accepted too). A file not named ``<Case>_<key>.nii[.gz]`` is still found when it
    is the only volume of the folder whose name ends in ``_<key>``. Volumes lying directly in ``root``
    (a plain folder of cases side by side, or ``root`` being one case folder) are grouped into cases by
    their name prefix ``<Case>`` of ``<Case>_<key>.nii[.gz]``.

    Args:
        root: dataset folder.
        require_label: a missing ``seg`` volume is an error; when False, such items have no
            ``"label"`` key.
        check_labels: read the segmentations and reject values outside :data:`BRATS_LABELS`.

    Returns:
        Items ``{"image": [t1, t1ce, t2, flair], "label": seg, "case_id": <Case>,
        "grade": "HGG" | "LGG" | "unknown"}`` sorted by case id; ``grade`` is the name of the folder
        holding the case folder when it is ``HGG`` or ``LGG`` (any case), else ``"unknown"`` (a string,
        not None, so that items collate in a DataLoader and can stratify splits).

    Raises:
        DatasetError: missing root, no cases, a missing modality or segmentation, an unreadable
            or truncated file, a shape or affine mismatch, unexpected label values, or two case
            folders with the same name.
    """
    root = check_root(root, "BraTS", _BRATS_LAYOUT)
    items: dict[str, dict] = {}
    cases = [(os.path.basename(f), f, listdir(f)) for f in _brats_case_folders(root)] + _flat_cases(root)
    for case, folder, names in cases:
        if case in items:
            raise DatasetError(f"case {case} appears twice: {os.path.dirname(items[case]['image'][0])} and {folder}.")
        image = []
        for modality in BRATS_MODALITIES:
            path = _brats_file(folder, case, modality, names)
            if path is None:
                expected = os.path.join(folder, f"{case}_{modality}.nii.gz")
                raise DatasetError(f"case {case} is missing its {modality} volume: expected {expected}.")
            image.append(path)
        label = _brats_file(folder, case, "seg", names)
        if label is None and require_label:
            expected = os.path.join(folder, f"{case}_seg.nii.gz")
            raise DatasetError(f"case {case} is missing its segmentation: expected {expected}.")

        reference = nifti_header(image[0])
        for path in image[1:] + ([label] if label else []):
            check_same_grid(image[0], reference, path, nifti_header(path))
        if label is not None and check_labels:
            check_label_values(label, BRATS_LABELS)

        parent = os.path.basename(os.path.dirname(folder)).upper()
        item: dict[str, Any] = {"image": image, "case_id": case, "grade": parent if parent in ("HGG", "LGG") else "unknown"}
        if label is not None:
            item["label"] = label
        items[case] = item
    if not items:
        raise DatasetError(f"no BraTS cases found under {root}; expected {_BRATS_LAYOUT}.")
    return sorted_by_case(items.values())
