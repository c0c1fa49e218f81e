"""Datalist scanners: find the cases of a dataset in its real on-disk layout and validate them.

Every scanner returns ``list[dict]`` sorted by ``case_id`` (natural order, so ``case (2)`` comes
before ``case (10)``) with absolute paths, ready for MONAI's ``Dataset``. Problems are reported
as :class:`~pipelines.data.errors.DatasetError` *before* training, with the offending file or
folder and the problem in the message: missing files, unreadable or truncated files, shape or
affine mismatches between the volumes of a case, label values outside the allowed set, masks of
another size than their image, CSV rows that point to missing images.

Checks are cheap where the datasets are large: NIfTI shapes and affines come from the headers
(plus a size check that detects truncated files without decompressing them in the common case);
label volumes are read only when ``check_labels`` is set.
"""

from __future__ import annotations

import csv
import glob
import gzip
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from .errors import DatasetError

__all__ = [
    "BRATS_LABELS",
    "BRATS_MODALITIES",
    "BUSI_CLASSES",
    "BUSI_LESION_CLASSES",
    "CHESTXRAY14_CSV",
    "HVSMR_LABELS",
    "MALC_LABELS",
    "MASK_SUFFIXES",
    "brats_datalist",
    "busi_class_names",
    "busi_datalist",
    "chestxray14_datalist",
    "hvsmr_datalist",
    "malc_datalist",
    "segmentation_datalist",
]

#: Channel order of a BraTS ``"image"`` item.
BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
#: BraTS label values: 0 background, 1 necrotic/non-enhancing core, 2 edema, 4 enhancing tumour.
BRATS_LABELS = (0, 1, 2, 4)
#: MALC: background and ten structures.
MALC_LABELS = tuple(range(11))
#: HVSMR: background, myocardium, blood pool.
HVSMR_LABELS = (0, 1, 2)
#: Suffixes a mask file name may add to its image's name in ``<root>/masks`` (MALC uses
#: ``_glm``, HVSMR 2016 ``-label``).
MASK_SUFFIXES = ("_mask", "-label", "_label", "_seg", "_glm")
#: BUSI classes with ``include_normal=True``: ``label`` is the index in this tuple.
BUSI_CLASSES = ("normal", "benign", "malignant")
#: BUSI classes with ``include_normal=False`` (the default): benign 0, malignant 1.
BUSI_LESION_CLASSES = ("benign", "malignant")
#: File name of the NIH ChestX-ray14 metadata table.
CHESTXRAY14_CSV = "Data_Entry_2017.csv"

_NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_BRATS_LAYOUT = (
    "<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz or the official download "
    "<root>/{HGG,LGG}/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz"
)
_AFFINE_ATOL = 1e-3


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``a (2)`` before ``a (10)``)."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", text))]


def _sorted_by_case(items: Iterable[dict]) -> list[dict]:
    return sorted(items, key=lambda item: _natural_key(item["case_id"]))


def _check_root(root: str, what: str, layout: str) -> str:
    root = os.path.abspath(os.fspath(root))
    if not os.path.exists(root):
        raise DatasetError(f"{what} root {root} does not exist; expected the layout {layout}.")
    if not os.path.isdir(root):
        raise DatasetError(f"{what} root {root} is not a folder; expected the layout {layout}.")
    return root


def _nifti_stem(name: str) -> str | None:
    for ext in _NIFTI_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def _listdir(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def _payload_complete(path: str, expected: int) -> bool:
    """Whether the file holds at least ``expected`` bytes (after decompression for ``.gz``).

    For gzip files the size stored in the trailer is compared first (cheap); only when it
    disagrees (a truncated file, or a multi-member gzip) is the file decompressed to count.
    """
    if not path.endswith(".gz"):
        return os.path.getsize(path) >= expected
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:
            return False
        f.seek(-4, os.SEEK_END)
        if int.from_bytes(f.read(4), "little") == expected % 2**32:
            return True
    total = 0
    try:
        with gzip.open(path, "rb") as g:
            while chunk := g.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return False
    return total >= expected


def _spatial_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Shape without trailing singleton dimensions beyond the third."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _nifti_header(path: str) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of a NIfTI file from its header; DatasetError if unreadable or truncated."""
    try:
        img = nib.load(path)
        shape = tuple(int(s) for s in img.shape)
        affine = np.asarray(img.affine, float)
        offset = getattr(img.dataobj, "offset", None)  # the header copy may report 0
        offset = int(img.header.get_data_offset() if offset is None else offset)
        expected = offset + int(np.prod(shape)) * img.header.get_data_dtype().itemsize
    except Exception as e:  # nibabel raises many types for damaged files
        raise DatasetError(f"{path}: unreadable NIfTI file ({type(e).__name__}: {e}).") from e
    if not _payload_complete(path, expected):
        raise DatasetError(
            f"{path}: truncated NIfTI file (its header announces {expected} bytes of header and voxel data)."
        )
    return _spatial_shape(shape), affine


def _check_same_grid(path_a: str, header_a: tuple, path_b: str, header_b: tuple) -> None:
    (shape_a, affine_a), (shape_b, affine_b) = header_a, header_b
    if shape_a != shape_b:
        raise DatasetError(f"shape mismatch: {path_a} has shape {shape_a} but {path_b} has shape {shape_b}.")
    if not np.allclose(affine_a, affine_b, atol=_AFFINE_ATOL):
        raise DatasetError(
            f"affine mismatch: {path_a} has affine {np.round(affine_a, 4).tolist()} but {path_b} has affine "
            f"{np.round(affine_b, 4).tolist()} (tolerance {_AFFINE_ATOL})."
        )


def _label_values(data: np.ndarray) -> np.ndarray:
    """Distinct values of a label volume (fast path for small non-negative integers)."""
    flat = np.asarray(data).ravel()
    if flat.size == 0:
        return flat
    if np.issubdtype(flat.dtype, np.integer) or np.issubdtype(flat.dtype, np.bool_):
        lo, hi = int(flat.min()), int(flat.max())
        if 0 <= lo and hi < 65536:
            return np.flatnonzero(np.bincount(flat.astype(np.int64), minlength=hi + 1))
    return np.unique(flat)


def _check_label_values(path: str, allowed: Sequence[int]) -> None:
    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception as e:
        raise DatasetError(f"{path}: unreadable NIfTI file ({type(e).__name__}: {e}).") from e
    values = _label_values(data)
    allowed_set = {float(v) for v in allowed}
    bad = [v for v in values.tolist() if float(v) not in allowed_set]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise DatasetError(f"{path}: unexpected label values [{shown}]; allowed values are {sorted(allowed)}.")


# --------------------------------------------------------------------------------------------
# BraTS
# --------------------------------------------------------------------------------------------
def _brats_file(folder: str, case: str, key: str, names: Sequence[str]) -> str | None:
    """Path of the ``key`` volume (modality or ``seg``) of a case folder, or None."""
    for ext in _NIFTI_EXTENSIONS:
        if f"{case}_{key}{ext}" in names:
            return os.path.join(folder, f"{case}_{key}{ext}")
    candidates = [n for n in names if (_nifti_stem(n) or "").endswith(f"_{key}")]
    if len(candidates) > 1:
        raise DatasetError(f"case folder {folder} has several '{key}' volumes: {candidates}.")
    return os.path.join(folder, candidates[0]) if candidates else None


def _is_brats_case(names: Sequence[str]) -> bool:
    keys = (*BRATS_MODALITIES, "seg")
    return any((_nifti_stem(n) or "").endswith(tuple(f"_{k}" for k in keys)) for n in names)


def _brats_case_folders(root: str) -> list[str]:
    """Case folders at depth 1 (``<root>/<Case>``) or 2 (``<root>/{HGG,LGG}/<Case>``)."""
    found = []
    for name in _listdir(root):
        level1 = os.path.join(root, name)
        if not os.path.isdir(level1):
            continue
        names = _listdir(level1)
        if _is_brats_case(names):
            found.append(level1)
            continue
        for sub in names:
            level2 = os.path.join(level1, sub)
            if os.path.isdir(level2) and _is_brats_case(_listdir(level2)):
                found.append(level2)
    return found


def brats_datalist(root: str, require_label: bool = True, check_labels: bool = True) -> list[dict]:
    """Scan and validate a BraTS 2018 dataset.

    Accepts ``<root>/<Case>/<Case>_{t1,t1ce,t2,flair,seg}.nii.gz`` and the official download
    ``<root>/{HGG,LGG}/<Case>/...`` (case folders are searched up to two levels deep; ``.nii``
    files are accepted too). A file not named ``<Case>_<key>.nii[.gz]`` is still found when it
    is the only volume of the folder whose name ends in ``_<key>``.

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
    root = _check_root(root, "BraTS", _BRATS_LAYOUT)
    items: dict[str, dict] = {}
    for folder in _brats_case_folders(root):
        case = os.path.basename(folder)
        if case in items:
            raise DatasetError(f"case {case} appears twice: {os.path.dirname(items[case]['image'][0])} and {folder}.")
        names = _listdir(folder)
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

        reference = _nifti_header(image[0])
        for path in image[1:] + ([label] if label else []):
            _check_same_grid(image[0], reference, path, _nifti_header(path))
        if label is not None and check_labels:
            _check_label_values(label, BRATS_LABELS)

        parent = os.path.basename(os.path.dirname(folder)).upper()
        item: dict[str, Any] = {"image": image, "case_id": case, "grade": parent if parent in ("HGG", "LGG") else "unknown"}
        if label is not None:
            item["label"] = label
        items[case] = item
    if not items:
        raise DatasetError(f"no BraTS cases found under {root}; expected {_BRATS_LAYOUT}.")
    return _sorted_by_case(items.values())


# --------------------------------------------------------------------------------------------
# MALC / HVSMR
# --------------------------------------------------------------------------------------------
def _nifti_files(folder: str) -> dict[str, str]:
    """``{stem: path}`` of the NIfTI files of a folder (DatasetError if two share a stem)."""
    files: dict[str, str] = {}
    for name in _listdir(folder):
        stem = _nifti_stem(name)
        path = os.path.join(folder, name)
        if stem is None or not os.path.isfile(path):
            continue
        if stem in files:
            raise DatasetError(f"{files[stem]} and {path} have the same case name {stem!r}.")
        files[stem] = path
    return files


def image_folder_datalist(folder: str) -> list[dict]:
    """Datalist of the NIfTI volumes of one folder, for inference on new images (no labels).

    Args:
        folder: a folder of ``*.nii.gz`` / ``*.nii`` files.

    Returns:
        ``[{"image": path, "case_id": stem}, ...]`` sorted by case id.

    Raises:
        DatasetError: when the folder is missing, holds no NIfTI file, or a file is unreadable or truncated.
    """
    folder = _check_root(folder, "image", "<folder>/*.nii.gz")
    files = _nifti_files(folder)
    if not files:
        raise DatasetError(f"{folder}: no NIfTI images (*.nii.gz, *.nii) found.")
    for path in files.values():
        _nifti_header(path)
    return _sorted_by_case({"image": path, "case_id": stem} for stem, path in files.items())


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
    root = _check_root(root, "segmentation dataset", layout)
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
        header = _nifti_header(image)
        if candidates:
            label = masks[candidates[0]]
            used.add(candidates[0])
            _check_same_grid(image, header, label, _nifti_header(label))
            if check_labels:
                _check_label_values(label, allowed_labels)
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
    return _sorted_by_case(items)


def malc_datalist(root: str, **kwargs: Any) -> list[dict]:
    """:func:`segmentation_datalist` with the MALC labels 0..10 (``kwargs`` are passed on)."""
    return segmentation_datalist(root, MALC_LABELS, **kwargs)


def hvsmr_datalist(root: str, **kwargs: Any) -> list[dict]:
    """:func:`segmentation_datalist` with the HVSMR labels 0, 1, 2 (``kwargs`` are passed on)."""
    return segmentation_datalist(root, HVSMR_LABELS, **kwargs)


# --------------------------------------------------------------------------------------------
# BUSI
# --------------------------------------------------------------------------------------------
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
    values = text.strip().split(":")
    if len(values) != 4:
        raise ValueError(f"expected x1:y1:x2:y2, got {text.strip()!r}")
    return [int(v) if re.fullmatch(r"\s*[-+]?\d+\s*", v) else float(v) for v in values]


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
        item["boxes"].extend(boxes)


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

    Box file: CSV rows ``image_path,class,x1:y1:x2:y2`` (pixel corners), the path relative to
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
        "case_id": "<cls> (N)", "boxes": [[x1, y1, x2, y2], ...] (with box_file)}`` sorted by
        case id (natural order).

    Raises:
        DatasetError: missing root or class folder, an empty class folder, an unreadable image or
            mask, a mask of another size than its image, a mask without image, a missing mask
            (``require_mask``), or a bad box-file row.
    """
    root = _check_root(root, "BUSI", _BUSI_LAYOUT)
    classes = busi_class_names(include_normal)
    folders = {
        name.lower(): os.path.join(root, name) for name in _listdir(root) if os.path.isdir(os.path.join(root, name))
    }
    items = []
    for label, cls in enumerate(classes):
        folder = folders.get(cls)
        if folder is None:
            raise DatasetError(f"class folder {os.path.join(root, cls)} does not exist; expected {_BUSI_LAYOUT}.")
        images: dict[str, str] = {}
        masks: dict[str, list[tuple[int, str]]] = {}
        for name in _listdir(folder):
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
    return _sorted_by_case(items)


# --------------------------------------------------------------------------------------------
# NIH ChestX-ray14
# --------------------------------------------------------------------------------------------
_CXR_LAYOUT = f"<root>/images/*.png (or <root>/images_001/images/*.png, ...) and <root>/{CHESTXRAY14_CSV}"


def _cxr_images(root: str) -> dict[str, str]:
    """``{file name: path}`` of the PNGs in ``images`` and ``images_*/images`` (or ``images_*``)."""
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
    root = _check_root(root, "ChestX-ray14", _CXR_LAYOUT)
    findings = tuple(findings)
    if len(findings) < 1 or len(set(findings)) != len(findings):
        raise ValueError(f"findings must be distinct class names, got {findings}.")
    csv_path = os.path.join(root, CHESTXRAY14_CSV)
    if not os.path.isfile(csv_path):
        raise DatasetError(f"metadata file {csv_path} does not exist; expected {_CXR_LAYOUT}.")
    images = _cxr_images(root)
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
    return _sorted_by_case(items.values())
