"""BUSI (Dataset_BUSI_with_GT) datalist.

On-disk layout: one folder per class, ``<root>/{benign,malignant,normal}/<cls> (N).png``, each
image with its lesion mask ``<cls> (N)_mask.png`` and, for images with several lesions, further
masks ``<cls> (N)_mask_1.png``, ``_mask_2.png``, ... (normal images have an all-zero mask). Some
images are RGB or RGBA. Optional bounding boxes come from a separate CSV (see
:func:`busi_datalist`): the file keeps the ``x1:y1:x2:y2`` columns (``x`` = column, ``y`` = row, pixel corners)
and the items hold the boxes in MONAI's 2D standard mode, ``[row_min, col_min, row_max, col_max]`` with
exclusive maxima (the one convention of :mod:`transforms.busi`).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence

from PIL import Image

from ..errors import DatasetError
from .common import check_root, listdir, sorted_by_case

__all__ = ["BUSI_CLASSES", "BUSI_LESION_CLASSES", "busi_class_names", "busi_datalist"]

#: BUSI classes with ``include_normal=True``: ``label`` is the index in this tuple.
BUSI_CLASSES = ("normal", "benign", "malignant")
#: BUSI classes with ``include_normal=False`` (the default): benign 0, malignant 1.
BUSI_LESION_CLASSES = ("benign", "malignant")

_BUSI_MASK = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<index>\d+))?\.png$", re.IGNORECASE)
_BUSI_LAYOUT = "<root>/{benign,malignant,normal}/'<class> (N).png' with '<class> (N)_mask.png' (and '_mask_1.png', ...)"


def busi_class_names(include_normal: bool = False) -> tuple[str, ...]:
    """Class names indexed by the ``label`` that :func:`busi_datalist` assigns.

    Args:
        include_normal: whether the normal class is used.

    Returns:
        :data:`BUSI_CLASSES` (normal 0, benign 1, malignant 2) or :data:`BUSI_LESION_CLASSES`
        (benign 0, malignant 1).
    """
    return BUSI_CLASSES if include_normal else BUSI_LESION_CLASSES


def _png_size(path: str) -> tuple[int, int]:
    """(width, height) of a fully decoded image; DatasetError if it cannot be decoded."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.size
    except Exception as e:
        raise DatasetError(f"{path}: unreadable image file ({type(e).__name__}: {e}).") from e


def _parse_box(text: str) -> list[float | int]:
    """One CSV box ``x1:y1:x2:y2`` (``x`` = column, ``y`` = row, pixel corners), numbers as written."""
    values = text.strip().split(":")
    if len(values) != 4:
        raise ValueError(f"expected x1:y1:x2:y2, got {text.strip()!r}")
    return [int(v) if re.fullmatch(r"\s*[-+]?\d+\s*", v) else float(v) for v in values]


def _csv_box_to_standard(box: Sequence[float]) -> list[float | int]:
    """A box of the BUSI CSV ``[x1, y1, x2, y2]`` (``x`` = column) -> MONAI's 2D standard mode in array index
    order ``[row_min, col_min, row_max, col_max]`` (``[y1, x1, y2, x2]``, exclusive maxima; :mod:`transforms.busi`)."""
    x1, y1, x2, y2 = box
    return [y1, x1, y2, x2]


def _attach_boxes(items: list[dict], root: str, box_file: str) -> None:
    box_file = os.path.abspath(os.fspath(box_file))
    if not os.path.isfile(box_file):
        raise DatasetError(f"box file {box_file} does not exist.")
    by_path = {os.path.realpath(item["image"]): item for item in items}
    for item in items:
        item["boxes"] = []
    with open(box_file, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    first = True
    for line, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"box file {box_file}, line {line}"
        try:
            if len(row) < 3:
                raise ValueError("expected 'image_path,class,x1:y1:x2:y2'")
            boxes = [_parse_box(b) for field in row[2:] for b in field.split(";") if b.strip()]
        except ValueError as e:
            if first:  # a header row
                first = False
                continue
            raise DatasetError(f"{where}: {e}.") from e
        first = False
        path = row[0].strip()
        path = os.path.normpath(path if os.path.isabs(path) else os.path.join(root, path))
        item = by_path.get(os.path.realpath(path))
        if item is None:
            if not os.path.exists(path):
                raise DatasetError(f"{where}: image {path} does not exist.")
            continue  # an image of a class that is not used (e.g. normal)
        cls = row[1].strip().lower()
        if cls and cls != item["class_name"]:
            raise DatasetError(
                f"{where}: class {row[1].strip()!r} disagrees with the folder of {item['image']} "
                f"({item['class_name']})."
            )
        width, height = item["size"]
        for x1, y1, x2, y2 in boxes:
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                raise DatasetError(
                    f"{where}: box {[x1, y1, x2, y2]} is empty or outside {item['image']} of size {width}x{height}."
                )
        item["boxes"].extend(_csv_box_to_standard(box) for box in boxes)


def busi_datalist(
    root: str, include_normal: bool = False, box_file: str | None = None, require_mask: bool = True
) -> list[dict]:
    """Scan and validate the BUSI dataset (Dataset_BUSI_with_GT).

    Layout: ``<root>/{benign,malignant,normal}/<cls> (N).png`` with masks ``<cls> (N)_mask.png``
    and optional further masks ``<cls> (N)_mask_1.png``, ``_mask_2.png``, ... (to be merged with a
    logical or). Every image and mask is decoded once to catch damaged files; each mask must have
    the size of its image.

    Labels: with ``include_normal=False`` benign 0, malignant 1 (:data:`BUSI_LESION_CLASSES`);
    with ``include_normal=True`` normal 0, benign 1, malignant 2 (:data:`BUSI_CLASSES`).

    Box file: CSV rows ``image_path,class,x1:y1:x2:y2`` (pixel corners, ``x`` = column), the path relative to
    ``root`` or absolute, several boxes separated by ``;`` or given on several rows, an optional
    header row, ``#`` comment lines. Every item then gets ``"boxes"`` (``[]`` when the file has none
    for it). Rows for images of an unused class are ignored; the class column, when not empty,
    must match the image's folder.

    Args:
        root: dataset folder holding the class folders.
        include_normal: also scan ``normal`` (and use the three-class labels).
        box_file: optional CSV of bounding boxes.
        require_mask: an image without any mask is an error; when False it gets ``"masks": []``.

    Returns:
        Items ``{"image", "masks": [paths], "label": int, "class_name": str,
        "case_id": "<cls> (N)", "boxes": [[row_min, col_min, row_max, col_max], ...] (with box_file,
        MONAI's standard mode: the CSV's ``x1:y1:x2:y2`` becomes ``[y1, x1, y2, x2]``)}`` sorted by case id
        (natural order).

    Raises:
        DatasetError: missing root or class folder, an empty class folder, an unreadable image or
            mask, a mask of another size than its image, a mask without image, a missing mask
            (``require_mask``), or a bad box-file row.
    """
    root = check_root(root, "BUSI", _BUSI_LAYOUT)
    classes = busi_class_names(include_normal)
    folders = {
        name.lower(): os.path.join(root, name) for name in listdir(root) if os.path.isdir(os.path.join(root, name))
    }
    items = []
    for label, cls in enumerate(classes):
        folder = folders.get(cls)
        if folder is None:
            raise DatasetError(f"class folder {os.path.join(root, cls)} does not exist; expected {_BUSI_LAYOUT}.")
        images: dict[str, str] = {}
        masks: dict[str, list[tuple[int, str]]] = {}
        for name in listdir(folder):
            if not name.lower().endswith(".png"):
                continue
            match = _BUSI_MASK.match(name)
            if match:
                index = int(match["index"]) if match["index"] is not None else -1
                masks.setdefault(match["stem"], []).append((index, os.path.join(folder, name)))
            else:
                images[name[:-4]] = os.path.join(folder, name)
        if not images:
            raise DatasetError(f"no images found in class folder {folder}; expected {_BUSI_LAYOUT}.")
        for stem in sorted(set(masks) - set(images)):
            raise DatasetError(
                f"mask {masks[stem][0][1]} has no image: expected {os.path.join(folder, stem + '.png')}."
            )
        for stem, image in images.items():
            size = _png_size(image)
            mask_paths = [p for _, p in sorted(masks.get(stem, []))]
            if not mask_paths and require_mask:
                raise DatasetError(f"{image} has no mask: expected {os.path.join(folder, stem + '_mask.png')}.")
            for mask in mask_paths:
                mask_size = _png_size(mask)
                if mask_size != size:
                    raise DatasetError(
                        f"size mismatch: mask {mask} is {mask_size[0]}x{mask_size[1]} but image {image} is "
                        f"{size[0]}x{size[1]} (width x height)."
                    )
            items.append(
                {"image": image, "masks": mask_paths, "label": label, "class_name": cls, "case_id": stem, "size": size}
            )
    if box_file is not None:
        _attach_boxes(items, root, box_file)
    for item in items:
        del item["size"]
    return sorted_by_case(items)
