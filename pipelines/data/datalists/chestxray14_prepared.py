"""Datalist of a prepared NIH ChestX-ray14 task folder (the layout ``python -m pipelines prepare chestxray14`` writes).

On-disk layout of one task (``ne``, ``np``, ``nep`` or ``neps``, see :data:`transforms.chestxray.CXR_TASKS`)::

    <task_dir>/{train,val,test}/<class_folder>/<Image Index>.png     class_folder: "No_Finding", "Effusion", ...
    <task_dir>/lung_boxes.csv                                         (``python -m pipelines lung-boxes``)

``lung_boxes.csv`` holds one row per image: ``image`` (the path relative to ``task_dir`` with forward slashes, e.g.
``train/Effusion/00000002_000.png``), the lung box ``row_min, col_min, row_max, col_max`` in the ORIGINAL image's
pixel grid (exclusive maxima, MONAI's 2D standard box mode), the image size ``height, width`` and ``lung_found``
(1 when the lung model found lung pixels, 0 when the box is the whole image).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from PIL import Image

from transforms.chestxray import CXR_TASKS, class_folder, finding_from_folder

from ..errors import DatasetError
from .common import check_root, listdir, sorted_by_case

__all__ = ["CXR_SPLITS", "LUNG_BOX_COLUMNS", "LUNG_BOX_FILE", "chestxray14_prepared_datalist", "read_lung_boxes"]

#: The splits of a prepared task folder.
CXR_SPLITS = ("train", "val", "test")
#: Default file name of the lung boxes in a task folder.
LUNG_BOX_FILE = "lung_boxes.csv"
#: Columns of the lung-box CSV.
LUNG_BOX_COLUMNS = ("image", "row_min", "col_min", "row_max", "col_max", "height", "width", "lung_found")

_LAYOUT = "<task_dir>/{train,val,test}/<class folder, e.g. No_Finding, Effusion>/*.png"
_LUNG_BOX_HINT = (
    "compute it with `python -m pipelines lung-boxes --task_dir <task_dir> --lung_bundle <cxr_lung_segmentation run "
    "folder>`, or pass lung_box_file=null (--lung_box_file null) to use the whole image as the lung box"
)


def _task_classes(task_dir: str, split_dir: str, class_names: Sequence[str] | None) -> tuple[str, ...]:
    """The class names: given, else those of the task named by the folder, else the task whose classes are the
    split's class folders."""
    if class_names is not None:
        names = tuple(class_names)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"class_names must be at least two distinct names, got {names}.")
        return names
    task = os.path.basename(os.path.normpath(task_dir))
    if task in CXR_TASKS:
        return CXR_TASKS[task]
    present = {finding_from_folder(n) for n in listdir(split_dir) if os.path.isdir(os.path.join(split_dir, n))}
    matches = [t for t, names in CXR_TASKS.items() if set(names) == present]
    if len(matches) != 1:
        raise DatasetError(
            f"cannot tell the task of {task_dir}: its folder name is not one of {sorted(CXR_TASKS)} and its class "
            f"folders {sorted(present)} match no task; pass class_names (or --task)."
        )
    return CXR_TASKS[matches[0]]


def _image_size(path: str) -> tuple[int, int]:
    """(height, width) from the image header; DatasetError when it is not a readable image."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception as e:
        raise DatasetError(f"{path}: unreadable image file ({type(e).__name__}: {e}).") from e
    return height, width


def read_lung_boxes(path: str) -> dict[str, dict]:
    """Read a lung-box CSV (module doc): ``{image (relative path): {"lung_box": [r0, c0, r1, c1] (int),
    "height", "width", "lung_found" (0/1)}}``.

    Raises:
        DatasetError: the file is missing, lacks a column, has an unparsable, duplicated or out-of-image row (the
            message names the file and line).
    """
    if not os.path.isfile(path):
        raise DatasetError(f"lung box file {path} does not exist; {_LUNG_BOX_HINT}.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in LUNG_BOX_COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"lung box file {path} lacks the column(s) {missing}; its header is {header}.")
        reader.fieldnames = header
        boxes: dict[str, dict] = {}
        for line, row in enumerate(reader, start=2):
            where = f"lung box file {path}, line {line}"
            image = (row["image"] or "").strip().replace("\\", "/")
            if not image:
                raise DatasetError(f"{where}: empty image column.")
            if image in boxes:
                raise DatasetError(f"{where}: image {image} is listed twice.")
            try:
                r0, c0, r1, c1, height, width, found = (
                    int(float(row[c])) for c in ("row_min", "col_min", "row_max", "col_max", "height", "width",
                                                 "lung_found")
                )
            except (TypeError, ValueError) as e:
                raise DatasetError(f"{where}: expected integer box, size and lung_found values ({e}).") from e
            if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
                raise DatasetError(
                    f"{where}: box [{r0}, {c0}, {r1}, {c1}] of {image} is empty or outside its {height} x {width} "
                    "image (row_min, col_min, row_max, col_max with exclusive maxima)."
                )
            if found not in (0, 1):
                raise DatasetError(f"{where}: lung_found must be 0 or 1, got {found}.")
            boxes[image] = {"lung_box": [r0, c0, r1, c1], "height": height, "width": width, "lung_found": found}
    return boxes


def chestxray14_prepared_datalist(
    task_dir: str,
    split: str,
    lung_box_file: str | None = LUNG_BOX_FILE,
    class_names: Sequence[str] | None = None,
    check_images: bool = True,
) -> list[dict]:
    """Scan one split of a prepared ChestX-ray14 task folder and join each image's lung box.

    The class of an image is its folder (``No_Finding`` -> ``"No Finding"``, :func:`transforms.chestxray.class_folder`);
    ``label`` is its index in ``class_names`` (default: the classes of the task the folder is named after, e.g.
    ``<root>/nep`` -> No Finding, Effusion, Pneumothorax, else the task whose classes are the split's folders).

    Args:
        task_dir: the task folder (``<prepared root>/<task>``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        lung_box_file: the lung-box CSV, relative to ``task_dir`` or absolute; None uses the whole image as every
            image's lung box (``lung_found`` 0).
        class_names: the classes in label order (class 0 No Finding).
        check_images: open each image's header: the image must be readable and, with a lung-box file, of the size
            the file recorded (a stale file computed for other images is caught).

    Returns:
        Items ``{"image": path, "label": int, "finding": str, "case_id": <file name without .png>,
        "lung_box": [row_min, col_min, row_max, col_max] (original pixel grid, exclusive maxima), "lung_found": 0/1}``
        sorted by case id.

    Raises:
        DatasetError: a missing task or split folder, an empty split, a class folder of no class, a class without
            folder, a missing lung-box file (with the command that writes it), an image the file does not list, an
            image of another size than recorded, an unreadable image.
        ValueError: an unknown ``split`` or bad ``class_names``.
    """
    if split not in CXR_SPLITS:
        raise ValueError(f"split must be one of {CXR_SPLITS}, got {split!r}.")
    task_dir = check_root(task_dir, "prepared ChestX-ray14 task", _LAYOUT)
    split_dir = os.path.join(task_dir, split)
    if not os.path.isdir(split_dir):
        raise DatasetError(
            f"split folder {split_dir} does not exist; expected {_LAYOUT} (written by `python -m pipelines prepare "
            "chestxray14 --source_dir <NIH download> --output_dir <root> --task <task>`)."
        )
    classes = _task_classes(task_dir, split_dir, class_names)
    folders = {n: os.path.join(split_dir, n) for n in listdir(split_dir) if os.path.isdir(os.path.join(split_dir, n))}
    known = {class_folder(c): c for c in classes}
    unknown = sorted(set(folders) - set(known))
    if unknown:
        raise DatasetError(
            f"{split_dir} holds the folder(s) {unknown}, which are not classes of {list(classes)} (folders "
            f"{sorted(known)}); prepare the folder for this task or pass the matching --task."
        )
    absent = [os.path.join(split_dir, f) for f in known if f not in folders]
    if absent:
        raise DatasetError(f"class folder(s) {absent} do not exist; expected {_LAYOUT}.")

    boxes = None
    box_path = None
    if lung_box_file is not None:
        box_path = os.fspath(lung_box_file)
        box_path = box_path if os.path.isabs(box_path) else os.path.join(task_dir, box_path)
        boxes = read_lung_boxes(box_path)

    items = []
    for folder_name, finding in known.items():
        folder = folders[folder_name]
        for name in listdir(folder):
            path = os.path.join(folder, name)
            if not name.lower().endswith(".png") or not os.path.isfile(path):
                continue
            relative = f"{split}/{folder_name}/{name}"
            if boxes is None:
                height, width = _image_size(path)
                box, found = [0, 0, height, width], 0
            else:
                entry = boxes.get(relative)
                if entry is None:
                    raise DatasetError(
                        f"image {path} ({relative}) has no row in the lung box file {box_path}; recompute the file "
                        f"for this task folder ({_LUNG_BOX_HINT})."
                    )
                if check_images:
                    size = _image_size(path)
                    if size != (entry["height"], entry["width"]):
                        raise DatasetError(
                            f"image {path} is {size[0]} x {size[1]} but the lung box file {box_path} records "
                            f"{entry['height']} x {entry['width']} for {relative}: the file belongs to other images; "
                            f"recompute it ({_LUNG_BOX_HINT})."
                        )
                box, found = list(entry["lung_box"]), int(entry["lung_found"])
            items.append({
                "image": path, "label": classes.index(finding), "finding": finding, "case_id": name[:-4],
                "lung_box": box, "lung_found": found,
            })
    if not items:
        raise DatasetError(f"split folder {split_dir} holds no PNG images; expected {_LAYOUT}.")
    return sorted_by_case(items)
