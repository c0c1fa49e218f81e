"""Lesion-detection datalists: BUSI (boxes from the masks) and a folder of scanner frames with a box file.

Items, one per image, in the box convention of :mod:`transforms.busi` (MONAI's 2D standard mode ``xyxy`` in array
index order of a ``(H, W)`` image, pixel corners, exclusive maxima)::

    {"image": path, "box": [[row_min, col_min, row_max, col_max], ...] (floats, the image's own grid),
     "label": [int, ...] (one per box), "case_id": str, "patient_id": str, "class_name": str, "size": [H, W]}

A negative image (no lesion) has ``"box": []`` and ``"label": []``. Files on disk keep the convention users know,
``x`` = column, ``y`` = row: a CSV box ``x1,y1,x2,y2`` becomes ``[y1, x1, y2, x2]`` and a COCO ``bbox``
``[x, y, w, h]`` becomes ``[y, x, y + h, x + w]``.

* :func:`busi_detection_datalist`: the BUSI layout of :func:`~pipelines.data.datalists.busi.busi_datalist`; one
  box per 8-connected component of the merged masks (:class:`transforms.busi.MasksToBoxes`), label 0 (lesion);
  normal images are negatives. BUSI has no patient ids: ``patient_id`` is the case id (an image-level split).
* :func:`frame_detection_datalist`: PNG / JPEG / DICOM frames under a folder plus ``boxes.csv`` or a COCO
  ``annotations.json`` (formats in its docstring); box labels are names or numbers mapped to contiguous ints.
* :func:`detection_datalist`: either of them, chosen by the folder's content (for ``--dataset_dir``).
* :func:`detection_split`: a patient-level training / validation split, stratified by negative / positive images
  (:func:`pipelines.data.splits.kfold_split`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from ..errors import DatasetError
from ..splits import kfold_split
from .busi import busi_datalist
from .common import check_root, sorted_by_case

__all__ = [
    "BOX_CSV",
    "BOX_CSV_COLUMNS",
    "COCO_JSON",
    "DEFAULT_LESION_LABEL",
    "busi_detection_datalist",
    "detection_datalist",
    "detection_split",
    "frame_detection_datalist",
]

logger = logging.getLogger(__name__)

#: Default box file of :func:`frame_detection_datalist` (CSV).
BOX_CSV = "boxes.csv"
#: Default box file of :func:`frame_detection_datalist` (COCO JSON).
COCO_JSON = "annotations.json"
#: Columns of the box CSV; ``label`` and ``patient_id`` may be left out.
BOX_CSV_COLUMNS = ("image", "x1", "y1", "x2", "y2", "label", "patient_id")
_REQUIRED_COLUMNS = BOX_CSV_COLUMNS[:5]
#: Name of a box whose label is empty (and of the one BUSI box class).
DEFAULT_LESION_LABEL = "lesion"
_UNLISTED = ("error", "negative", "ignore")
_MASK_FILE = re.compile(r"_mask(?:_\d+)?\.png$", re.IGNORECASE)


def _natural_key(text: str) -> list[Any]:
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", text))]


# --------------------------------------------------------------------------------------------------- BUSI
def busi_detection_datalist(root: str, include_normal: bool = True) -> list[dict]:
    """BUSI (Dataset_BUSI_with_GT) as a detection datalist: boxes from the masks.

    The images and masks are scanned and validated by :func:`~pipelines.data.datalists.busi.busi_datalist`; the
    masks of a benign or malignant image are merged with a logical or (:func:`transforms.busi.load_busi_masks`)
    and every 8-connected component gives one box (:class:`transforms.busi.MasksToBoxes`), label 0. Normal images
    are negatives (no box; their all-zero masks are not read). BUSI has no patient ids, so ``patient_id`` is the
    case id and a split by it is image-level.

    Args:
        root: dataset folder holding ``benign/``, ``malignant/`` (and ``normal/``).
        include_normal: also list the normal images (as negatives).

    Returns:
        Items ``{"image", "box", "label", "case_id", "patient_id", "class_name", "size": [H, W]}`` (module
        docstring) sorted by case id.

    Raises:
        DatasetError: everything :func:`busi_datalist` reports, and a benign or malignant image whose masks are
            all empty.
    """
    from transforms.busi import MasksToBoxes, load_busi_masks

    to_boxes = MasksToBoxes()
    items = []
    for entry in busi_datalist(root, include_normal=include_normal):
        image = entry["image"]
        try:
            with Image.open(image) as img:
                width, height = img.size
        except Exception as e:
            raise DatasetError(f"{image}: unreadable image file ({type(e).__name__}: {e}).") from e
        boxes: list[list[float]] = []
        if entry["class_name"] != "normal":
            try:
                mask, _ = load_busi_masks(entry["masks"], (height, width), image)
            except (OSError, ValueError) as e:
                raise DatasetError(f"{image}: cannot read its masks: {e}") from e
            boxes = [[float(v) for v in box] for box in to_boxes(mask).tolist()]
            if not boxes:
                raise DatasetError(
                    f"{image}: its mask(s) {', '.join(entry['masks'])} are empty, but a {entry['class_name']} image "
                    "needs its lesion drawn (a box is computed from every connected component)."
                )
        items.append(
            {
                "image": image,
                "box": boxes,
                "label": [0] * len(boxes),
                "case_id": entry["case_id"],
                "patient_id": entry["case_id"],
                "class_name": entry["class_name"],
                "size": [height, width],
            }
        )
    return sorted_by_case(items)


# --------------------------------------------------------------------------------------------------- frames
def _image_extensions() -> tuple[str, ...]:
    """The file types the folder predictor reads (imported here: ``predictors`` imports ``data``)."""
    from ...predictors.folder import IMAGE_EXTENSIONS

    return tuple(IMAGE_EXTENSIONS)


def _list_frames(root: str) -> list[str]:
    """Frames under ``root`` (recursive; hidden files and folders and BUSI ``*_mask*.png`` left out), sorted."""
    extensions = _image_extensions()
    frames = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(extensions) or _MASK_FILE.search(name):
                continue
            frames.append(os.path.normpath(os.path.join(folder, name)))
    return sorted(frames)


def _frame_size(path: str, where: str) -> tuple[int, int]:
    """``(H, W)`` of a frame: PIL for PNG / JPEG (fully decoded, so truncated files are caught), the folder
    predictor's loader for DICOM (:func:`pipelines.predictors.folder.load_input_image`)."""
    try:
        if path.lower().endswith(".dcm"):
            from ...predictors.folder import load_input_image

            shape = load_input_image(path).shape
            return int(shape[-2]), int(shape[-1])
        with Image.open(path) as img:
            img.load()
            width, height = img.size
        return int(height), int(width)
    except Exception as e:
        raise DatasetError(f"{where}: unreadable image {path} ({type(e).__name__}: {e}).") from e


class _Frames:
    """Collects the frames of a box file: resolved paths, sizes (read once), boxes, labels, patient ids."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.extensions = _image_extensions()
        self.frames: dict[str, dict[str, Any]] = {}

    def get(self, name: str, where: str) -> dict[str, Any]:
        """The record of the image ``name`` (relative to the root, or absolute), created on first use."""
        name = name.strip()
        if not name:
            raise DatasetError(f"{where}: the image is empty.")
        path = os.path.normpath(name if os.path.isabs(name) else os.path.join(self.root, name))
        record = self.frames.get(path)
        if record is not None:
            return record
        if not os.path.isfile(path):
            raise DatasetError(f"{where}: unknown image {name!r}: {path} does not exist.")
        if not path.lower().endswith(self.extensions):
            raise DatasetError(f"{where}: image {path} is not a {'/'.join(self.extensions)} file.")
        height, width = _frame_size(path, where)
        record = {"path": path, "size": (height, width), "boxes": [], "names": [], "patient_id": "", "negative": None}
        self.frames[path] = record
        return record

    @staticmethod
    def set_patient(record: dict[str, Any], patient_id: str, where: str) -> None:
        patient_id = patient_id.strip()
        if not patient_id:
            return
        if record["patient_id"] and record["patient_id"] != patient_id:
            raise DatasetError(
                f"{where}: patient_id {patient_id!r} of image {record['path']} disagrees with {record['patient_id']!r} "
                "given for it before."
            )
        record["patient_id"] = patient_id

    @staticmethod
    def add_box(record: dict[str, Any], x1: float, y1: float, x2: float, y2: float, name: str, where: str) -> None:
        """Check a box given as ``x1, y1, x2, y2`` (``x`` = column, pixel corners) and store it as
        ``[y1, x1, y2, x2]``."""
        height, width = record["size"]
        values = [x1, y1, x2, y2]
        if not all(math.isfinite(v) for v in values):
            raise DatasetError(f"{where}: box x1,y1,x2,y2 = {values} has a value that is not a finite number.")
        if x2 <= x1:
            raise DatasetError(f"{where}: box x1,y1,x2,y2 = {values} has x2 <= x1 (empty box).")
        if y2 <= y1:
            raise DatasetError(f"{where}: box x1,y1,x2,y2 = {values} has y2 <= y1 (empty box).")
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise DatasetError(
                f"{where}: box x1,y1,x2,y2 = {values} lies outside image {record['path']} of {width}x{height} pixels "
                f"(width x height; x in [0, {width}], y in [0, {height}])."
            )
        if record["negative"] is not None:
            raise DatasetError(
                f"{where}: image {record['path']} has a box but {record['negative']} marks it as a negative frame."
            )
        record["boxes"].append([float(y1), float(x1), float(y2), float(x2)])
        record["names"].append(name.strip() or DEFAULT_LESION_LABEL)
        record["where"] = record.get("where", where)

    @staticmethod
    def set_negative(record: dict[str, Any], where: str) -> None:
        if record["boxes"]:
            raise DatasetError(
                f"{where}: marks image {record['path']} as a negative frame (no box), but {record['where']} gives it a "
                "box."
            )
        if record["negative"] is None:
            record["negative"] = where


def _read_box_csv(path: str, frames: _Frames) -> list[str]:
    """Fill ``frames`` from a box CSV; returns the box label names found."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                where = f"box file {path}, line {line} (header)"
                expected = ",".join(BOX_CSV_COLUMNS)
                duplicates = sorted({c for c in header if header.count(c) > 1})
                if duplicates:
                    raise DatasetError(f"{where}: column(s) {duplicates} appear more than once; expected {expected}.")
                unknown = [c for c in header if c not in BOX_CSV_COLUMNS]
                missing = [c for c in _REQUIRED_COLUMNS if c not in header]
                if unknown or missing:
                    raise DatasetError(
                        f"{where}: a header row is required with the columns {expected} (label and patient_id "
                        f"optional); got {row}"
                        + (f", unknown column(s) {unknown}" if unknown else "")
                        + (f", missing {missing}" if missing else "")
                        + "."
                    )
                continue
            where = f"box file {path}, line {line}"
            if len(row) != len(header):
                raise DatasetError(f"{where}: expected {len(header)} fields ({','.join(header)}), got {len(row)}.")
            cells = dict(zip(header, (c.strip() for c in row)))
            record = frames.get(cells["image"], where)
            frames.set_patient(record, cells.get("patient_id", ""), where)
            coords = [cells[c] for c in ("x1", "y1", "x2", "y2")]
            if not any(coords):
                frames.set_negative(record, where)
                continue
            if not all(coords):
                raise DatasetError(
                    f"{where}: x1,y1,x2,y2 = {coords}: give all four numbers, or none for a negative frame."
                )
            try:
                x1, y1, x2, y2 = (float(c) for c in coords)
            except ValueError as e:
                raise DatasetError(f"{where}: x1,y1,x2,y2 = {coords} are not numbers.") from e
            frames.add_box(record, x1, y1, x2, y2, cells.get("label", ""), where)
    if header is None:
        raise DatasetError(f"box file {path} is empty; expected a header {','.join(BOX_CSV_COLUMNS)} and rows.")
    return sorted({n for r in frames.frames.values() for n in r["names"]}, key=_natural_key)


def _coco_list(data: Mapping, key: str, path: str, required: bool) -> list:
    value = data.get(key, None)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise DatasetError(f"COCO file {path}: {key!r} must be a list, got {type(value).__name__}.")
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise DatasetError(f"COCO file {path}: {key}[{i}] must be an object, got {entry!r}.")
    return value


def _read_coco(path: str, frames: _Frames) -> list[str]:
    """Fill ``frames`` from a COCO JSON file; returns the category names (all declared categories)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"COCO file {path}: unreadable JSON ({type(e).__name__}: {e}).") from e
    if not isinstance(data, dict):
        raise DatasetError(f"COCO file {path}: expected an object with 'images', 'annotations', 'categories'.")
    categories: dict[Any, str] = {}
    for i, cat in enumerate(_coco_list(data, "categories", path, required=False)):
        where = f"COCO file {path}, categories[{i}]"
        if "id" not in cat:
            raise DatasetError(f"{where}: no 'id'.")
        if cat["id"] in categories:
            raise DatasetError(f"{where}: category id {cat['id']!r} appears twice.")
        categories[cat["id"]] = str(cat.get("name", cat["id"])).strip() or str(cat["id"])
    if len(set(categories.values())) != len(categories):
        raise DatasetError(f"COCO file {path}: category names {sorted(categories.values())} are not unique.")
    images: dict[Any, dict[str, Any]] = {}
    for i, entry in enumerate(_coco_list(data, "images", path, required=True)):
        where = f"COCO file {path}, images[{i}] (id {entry.get('id')!r})"
        if "id" not in entry or "file_name" not in entry:
            raise DatasetError(f"{where}: an image needs 'id' and 'file_name'.")
        if entry["id"] in images:
            raise DatasetError(f"{where}: image id {entry['id']!r} appears twice.")
        record = frames.get(str(entry["file_name"]), where)
        if record["negative"] is not None:
            raise DatasetError(f"{where}: image {record['path']} is listed twice ({record['negative']}).")
        height, width = record["size"]
        for key, actual in (("width", width), ("height", height)):
            if key in entry and entry[key] is not None and entry[key] != actual:
                raise DatasetError(
                    f"{where}: {key} {entry[key]!r} disagrees with the image {record['path']} ({width}x{height})."
                )
        frames.set_patient(record, str(entry.get("patient_id", "") or ""), where)
        frames.set_negative(record, where)  # until an annotation gives it a box
        images[entry["id"]] = record
    for i, ann in enumerate(_coco_list(data, "annotations", path, required=False)):
        where = f"COCO file {path}, annotations[{i}] (id {ann.get('id')!r})"
        record = images.get(ann.get("image_id"))
        if record is None:
            raise DatasetError(f"{where}: unknown image_id {ann.get('image_id')!r} (not in 'images').")
        if "category_id" in ann and ann["category_id"] is not None:
            if ann["category_id"] not in categories:
                raise DatasetError(f"{where}: unknown category_id {ann['category_id']!r} (not in 'categories').")
            name = categories[ann["category_id"]]
        elif categories:
            raise DatasetError(f"{where}: no 'category_id'.")
        else:
            name = DEFAULT_LESION_LABEL
        bbox = ann.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            raise DatasetError(f"{where}: bbox must be four numbers [x, y, width, height], got {bbox!r}.")
        x, y, w, h = (float(v) for v in bbox)
        record["negative"] = None  # an annotated image is no negative
        frames.add_box(record, x, y, x + w, y + h, name, where)
    names = set(categories.values()) | {n for r in frames.frames.values() for n in r["names"]}
    return sorted(names, key=_natural_key)


def _default_box_file(root: str) -> str:
    candidates = [os.path.join(root, name) for name in (BOX_CSV, COCO_JSON)]
    found = [p for p in candidates if os.path.isfile(p)]
    if len(found) == 2:
        raise DatasetError(f"both {found[0]} and {found[1]} exist in {root}; choose one with box_file.")
    if not found:
        raise DatasetError(
            f"no box file in {root}: expected {BOX_CSV} (columns {','.join(BOX_CSV_COLUMNS)}) or {COCO_JSON} (COCO), "
            "or pass box_file."
        )
    return found[0]


def frame_detection_datalist(
    root: str, box_file: str | None = None, unlisted: str = "error", return_label_names: bool = False
) -> list[dict] | tuple[list[dict], tuple[str, ...]]:
    """A folder of PNG / JPEG / DICOM frames plus a box file, as a detection datalist.

    Frames: every ``.png``, ``.jpg``, ``.jpeg`` or ``.dcm`` file under ``root``, subfolders included (clinic
    exports often hold a folder per patient or study); hidden files and folders and BUSI ``*_mask*.png`` files are
    left out. Each image's size is read once (PNG / JPEG fully decoded by PIL; DICOM through
    :func:`pipelines.predictors.folder.load_input_image`, the loader of inference).

    Box file, by default ``<root>/boxes.csv`` or ``<root>/annotations.json`` (not both):

    * CSV with a header row naming the columns ``image,x1,y1,x2,y2,label,patient_id`` (any order; ``label`` and
      ``patient_id`` may be left out); ``image`` relative to ``root`` (or absolute); ``x`` = column, ``y`` = row,
      pixel corners, exclusive maxima (``x2 - x1`` is the width in pixels); one row per box, so an image may have
      several rows; a row with empty ``x1..y2`` marks a negative frame; ``label`` a name or a number (empty:
      ``"lesion"``); ``patient_id`` empty or absent: the image's case id. Blank lines and lines starting with
      ``#`` are skipped.
    * COCO JSON: ``images`` (``id``, ``file_name`` relative to ``root``, optional ``width``/``height``, which
      must match the file, and optional ``patient_id``), ``annotations`` (``image_id``, ``bbox`` ``[x, y, width,
      height]``, ``category_id``), ``categories`` (``id``, ``name``). Images without annotations are negatives.

    Box labels: the names (CSV ``label`` values, COCO category names; numbers as written) in natural sort order
    give the ints 0, 1, ...; with ``return_label_names`` they are returned. ``class_name`` is ``"lesion"`` for an
    image with a box and ``"negative"`` without.

    Args:
        root: the frames folder.
        box_file: the CSV (``.csv``) or COCO (``.json``) file; relative paths are tried from the current folder,
            then from ``root``.
        unlisted: what to do with frames under ``root`` that the box file does not name: ``"error"`` (the default:
            a frame nobody annotated is not silently taken for a negative), ``"negative"`` (no lesion) or
            ``"ignore"`` (left out).
        return_label_names: also return the label names.

    Returns:
        Items ``{"image", "box", "label", "case_id", "patient_id", "class_name", "size": [H, W]}`` sorted by case id
        (the image path relative to ``root`` without its extension, ``/``-separated), and with
        ``return_label_names`` the tuple of label names indexed by ``label``.

    Raises:
        DatasetError: a missing root or box file, a header without the required columns or with duplicate or
            unknown columns, a row with the wrong number of fields, an unknown (missing) or unreadable image, a box
            with ``x2 <= x1`` or ``y2 <= y1`` or outside its image, an image marked negative and given a box, two
            patient ids for one image, an unknown COCO image or category id, frames the box file does not name
            (``unlisted="error"``), two images with the same case id, or no image at all; each message names the
            file and the line (CSV) or the entry (COCO).
        ValueError: a bad ``unlisted``.
    """
    if unlisted not in _UNLISTED:
        raise ValueError(f"unlisted must be one of {_UNLISTED}, got {unlisted!r}.")
    root = check_root(root, "frame", f"<root>/*.png|*.jpg|*.dcm with <root>/{BOX_CSV} or <root>/{COCO_JSON}")
    if box_file is None:
        box_file = _default_box_file(root)
    else:
        box_file = os.fspath(box_file)
        if not os.path.isabs(box_file) and not os.path.exists(box_file):
            box_file = os.path.join(root, box_file)
        box_file = os.path.abspath(box_file)
        if not os.path.isfile(box_file):
            raise DatasetError(f"box file {box_file} does not exist.")
    frames = _Frames(root)
    if box_file.lower().endswith(".csv"):
        names = _read_box_csv(box_file, frames)
    elif box_file.lower().endswith(".json"):
        names = _read_coco(box_file, frames)
    else:
        raise DatasetError(
            f"box file {box_file}: expected a .csv (columns {','.join(BOX_CSV_COLUMNS)}) or a COCO .json."
        )

    missing = [p for p in _list_frames(root) if p not in frames.frames]
    if missing and unlisted == "error":
        shown = ", ".join(os.path.relpath(p, root) for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} frame(s) under {root} are not in the box file {box_file}: {shown}. List them (a CSV row "
            "with empty x1..y2, a COCO image without annotations, for a negative frame), or pass "
            "unlisted='negative' or 'ignore'."
        )
    if unlisted == "negative":
        for path in missing:
            frames.get(path, f"frame {path}")
    if not frames.frames:
        raise DatasetError(f"box file {box_file} names no image and no frame is under {root}: the dataset is empty.")

    label_of = {name: i for i, name in enumerate(names)}
    items, seen = [], {}
    for path, record in frames.frames.items():
        rel = os.path.relpath(path, root)
        case_id = os.path.splitext(rel if not rel.startswith("..") else os.path.basename(path))[0].replace(os.sep, "/")
        if case_id in seen:
            raise DatasetError(f"images {seen[case_id]} and {path} have the same case id {case_id!r}; rename one.")
        seen[case_id] = path
        items.append(
            {
                "image": path,
                "box": [list(b) for b in record["boxes"]],
                "label": [label_of[n] for n in record["names"]],
                "case_id": case_id,
                "patient_id": record["patient_id"] or case_id,
                "class_name": "lesion" if record["boxes"] else "negative",
                "size": list(record["size"]),
            }
        )
    items = sorted_by_case(items)
    logger.info(
        "%s: %d frames (%d with boxes, %d boxes), labels %s.",
        box_file, len(items), sum(bool(it["box"]) for it in items), sum(len(it["box"]) for it in items),
        dict(label_of),
    )
    return (items, tuple(names)) if return_label_names else items


def detection_datalist(
    root: str,
    layout: str = "auto",
    include_normal: bool = True,
    box_file: str | None = None,
    unlisted: str = "error",
    return_label_names: bool = False,
) -> list[dict] | tuple[list[dict], tuple[str, ...]]:
    """The detection datalist of a ``--dataset_dir``: a BUSI folder or a frames folder with a box file.

    Args:
        root: the dataset folder.
        layout: ``"busi"`` (:func:`busi_detection_datalist`), ``"frames"`` (:func:`frame_detection_datalist`) or
            ``"auto"``: frames when ``box_file`` is given or ``root`` holds ``boxes.csv`` / ``annotations.json``,
            else BUSI.
        include_normal: BUSI only: list the normal images as negatives.
        box_file: frames only: the box file.
        unlisted: frames only: see :func:`frame_detection_datalist`.
        return_label_names: also return the box label names (BUSI: ``("lesion",)``).

    Returns:
        The items (module docstring), and with ``return_label_names`` the label names indexed by ``label``.

    Raises:
        DatasetError: see the two scanners.
        ValueError: an unknown ``layout``.
    """
    if layout not in ("auto", "busi", "frames"):
        raise ValueError(f"layout must be 'auto', 'busi' or 'frames', got {layout!r}.")
    auto = layout == "auto"
    if auto:
        has_box_file = box_file is not None or any(
            os.path.isfile(os.path.join(os.fspath(root), n)) for n in (BOX_CSV, COCO_JSON)
        )
        layout = "frames" if has_box_file else "busi"
    if layout == "busi":
        try:
            items = busi_detection_datalist(root, include_normal=include_normal)
        except DatasetError as e:
            if auto:  # neither layout found: say both
                raise DatasetError(f"{e} Or, for scanner frames: {os.path.join(os.fspath(root), BOX_CSV)} (columns "
                                   f"{','.join(BOX_CSV_COLUMNS)}) or {COCO_JSON} beside the frames.") from e
            raise
        return (items, (DEFAULT_LESION_LABEL,)) if return_label_names else items
    return frame_detection_datalist(root, box_file=box_file, unlisted=unlisted, return_label_names=return_label_names)


# --------------------------------------------------------------------------------------------------- split
def detection_split(
    datalist: Sequence[Mapping],
    val_fraction: float = 0.2,
    seed: int = 0,
    group_key: str | None = "patient_id",
    fold: int = 0,
) -> tuple[list, list]:
    """A patient-level training / validation split, stratified by negative / positive images.

    This is fold ``fold`` of the deterministic grouped, stratified k-fold split of
    :func:`pipelines.data.splits.kfold_split` with ``k = round(1 / val_fraction)`` folds: all images of a patient
    (``item[group_key]``) fall on one side, and the images with and without boxes are spread in proportion. The
    validation share is therefore ``1 / k`` of the patients (0.2 -> 5 folds, the seed's 80/20 split; 0.3 -> 3
    folds); folds 0 .. k-1 give a cross-validation.

    Args:
        datalist: detection items (need ``"box"`` and ``group_key``).
        val_fraction: validation share, in (0, 0.5].
        seed: shuffle seed; the same arguments always give the same split.
        group_key: key of the patient id; None splits images.
        fold: which of the ``k`` folds is the validation set.

    Returns:
        ``(train, val)``: the same item objects, in datalist order.

    Raises:
        ValueError: ``val_fraction`` outside (0, 0.5], a bad ``fold``, an item without ``"box"`` or ``group_key``.
        DatasetError: fewer patients (images) than ``k``.
    """
    if not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction!r}.")
    num_folds = max(2, int(round(1.0 / val_fraction)))
    proxies = []
    for i, item in enumerate(datalist):
        if "box" not in item:
            raise ValueError(f"item {i} has no 'box' key: {item!r}.")
        proxy = {"positive": len(item["box"]) > 0}
        if group_key is not None:
            if group_key not in item:
                raise ValueError(f"item {i} has no group key {group_key!r}: {item!r}.")
            proxy["group"] = str(item[group_key])
        proxies.append(proxy)
    num_groups = len({p["group"] for p in proxies}) if group_key is not None else len(proxies)
    if num_groups < num_folds:
        what = f"patients ({group_key!r})" if group_key is not None else "images"
        raise DatasetError(
            f"val_fraction={val_fraction} needs at least {num_folds} {what}, the datalist has {num_groups}."
        )
    train_p, val_p = kfold_split(
        proxies, num_folds, fold, stratify_key="positive", group_key="group" if group_key else None, seed=seed
    )
    val_ids = {id(p) for p in val_p}
    train = [item for item, p in zip(datalist, proxies) if id(p) not in val_ids]
    val = [item for item, p in zip(datalist, proxies) if id(p) in val_ids]
    return train, val

