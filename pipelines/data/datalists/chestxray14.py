"""NIH ChestX-ray14 datalist.

On-disk layout: the radiographs ``<root>/images/<patient>_<follow-up>.png`` (the NIH download
splits them into ``<root>/images_001/images/*.png``, ``images_002/...``) and the metadata table
``<root>/Data_Entry_2017.csv`` with one row per image (``Image Index``, ``Finding Labels`` with
``|`` between the findings of multi-label images, ``Patient ID``, ...).
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Sequence

from PIL import Image

from ..errors import DatasetError
from .common import check_root, sorted_by_case

__all__ = ["CHESTXRAY14_CSV", "chestxray14_datalist", "chestxray14_images"]

#: File name of the NIH ChestX-ray14 metadata table.
CHESTXRAY14_CSV = "Data_Entry_2017.csv"

_CXR_LAYOUT = f"<root>/images/*.png (or <root>/images_001/images/*.png, ...) and <root>/{CHESTXRAY14_CSV}"


def chestxray14_images(root: str) -> dict[str, str]:
    """``{file name: path}`` of the PNGs in ``images`` and ``images_*/images`` (or ``images_*``).

    Raises:
        DatasetError: the same file name in two folders.
    """
    patterns = [
        os.path.join(root, "images", "*.png"),
        os.path.join(root, "images_*", "images", "*.png"),
        os.path.join(root, "images_*", "*.png"),
    ]
    found: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            name = os.path.basename(path)
            if name in found and found[name] != path:
                raise DatasetError(f"image {name} exists twice: {found[name]} and {path}.")
            found[name] = path
    return found


def _normalise_patient_id(text: str) -> str:
    text = text.strip()
    return f"{int(text):08d}" if text.isdigit() else text


def chestxray14_datalist(
    root: str, findings: Sequence[str] = ("No Finding", "Effusion"), check_images: bool = True
) -> list[dict]:
    """Scan and validate NIH ChestX-ray14 for single-label classification.

    Reads ``<root>/Data_Entry_2017.csv`` by column name (``Image Index``, ``Finding Labels``,
    ``Patient ID``; any other or odd columns, such as the unquoted ``OriginalImage[Width,Height]``
    and the trailing empty column of the real file, are ignored) and keeps the rows whose
    ``Finding Labels`` is exactly one of ``findings`` (multi-label rows ``A|B`` are skipped).
    Images are looked up by name in ``<root>/images`` and in the ``images_NNN/images`` folders of
    the NIH download. Only the kept rows need their image on disk.

    Args:
        root: dataset folder.
        findings: the classes, in label order (``label`` is the index in this sequence).
        check_images: open each kept image's header to catch files that are not readable images.

    Returns:
        Items ``{"image", "label": int, "finding": str, "patient_id": str, "case_id": <Image Index>}``
        sorted by case id. ``patient_id`` is zero-padded to 8 digits when numeric (``"1"`` ->
        ``"00000001"``), matching the image names.

    Raises:
        DatasetError: missing root, CSV or columns, a malformed or duplicated row, a kept row
            whose image is missing or unreadable, or no matching rows.
    """
    root = check_root(root, "ChestX-ray14", _CXR_LAYOUT)
    findings = tuple(findings)
    if len(findings) < 1 or len(set(findings)) != len(findings):
        raise ValueError(f"findings must be distinct class names, got {findings}.")
    csv_path = os.path.join(root, CHESTXRAY14_CSV)
    if not os.path.isfile(csv_path):
        raise DatasetError(f"metadata file {csv_path} does not exist; expected {_CXR_LAYOUT}.")
    images = chestxray14_images(root)
    if not images:
        raise DatasetError(f"no PNG images found under {root}; expected {_CXR_LAYOUT}.")

    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DatasetError(f"{csv_path} is empty.")
    header = [h.strip() for h in rows[0]]
    required = ("Image Index", "Finding Labels", "Patient ID")
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{csv_path} lacks the column(s) {missing}; its header is {rows[0]}.")
    col = {c: header.index(c) for c in required}
    width = max(col.values()) + 1

    items: dict[str, dict] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < width:
            raise DatasetError(f"{csv_path}, line {line}: expected at least {width} columns, got {len(row)}.")
        name = row[col["Image Index"]].strip()
        labels = [s.strip() for s in row[col["Finding Labels"]].split("|")]
        if len(labels) != 1 or labels[0] not in findings:
            continue
        if name in items:
            raise DatasetError(f"{csv_path}, line {line}: image {name} is listed twice.")
        path = images.get(name)
        if path is None:
            raise DatasetError(f"{csv_path}, line {line}: image {name} is missing; looked in {_CXR_LAYOUT}.")
        if check_images:
            try:
                with Image.open(path) as img:
                    img.size  # noqa: B018 - the header is parsed by open()
            except Exception as e:
                raise DatasetError(f"{path}: unreadable image file ({type(e).__name__}: {e}).") from e
        items[name] = {
            "image": path,
            "label": findings.index(labels[0]),
            "finding": labels[0],
            "patient_id": _normalise_patient_id(row[col["Patient ID"]]),
            "case_id": name,
        }
    if not items:
        raise DatasetError(f"{csv_path}: no single-label rows with a finding in {list(findings)}.")
    return sorted_by_case(items.values())
