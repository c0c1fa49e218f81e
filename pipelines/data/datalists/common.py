"""Checks shared by the datalist scanners.

Natural case order, the dataset-root check, NIfTI names and headers (shape and affine read from
the header, plus a size check that detects truncated files without decompressing them in the
common case), same-grid and label-value checks. Every problem is a
:class:`~pipelines.data.errors.DatasetError` naming the offending file or folder.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import DatasetError

__all__ = [
    "NIFTI_EXTENSIONS",
    "check_label_values",
    "check_root",
    "check_same_grid",
    "listdir",
    "nifti_header",
    "nifti_stem",
    "sorted_by_case",
]

#: File extensions of NIfTI volumes, longest first.
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_AFFINE_ATOL = 1e-3


def _natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically (``a (2)`` before ``a (10)``)."""
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", text))]


def sorted_by_case(items: Iterable[dict]) -> list[dict]:
    """The items sorted by ``case_id`` in natural order."""
    return sorted(items, key=lambda item: _natural_key(item["case_id"]))


def check_root(root: str, what: str, layout: str) -> str:
    """Absolute path of a dataset folder; DatasetError naming ``layout`` if missing or not a folder."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.exists(root):
        raise DatasetError(f"{what} root {root} does not exist; expected the layout {layout}.")
    if not os.path.isdir(root):
        raise DatasetError(f"{what} root {root} is not a folder; expected the layout {layout}.")
    return root


def nifti_stem(name: str) -> str | None:
    """File name without its ``.nii.gz`` / ``.nii`` extension, or None for another file."""
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def listdir(folder: str) -> list[str]:
    """Sorted names in ``folder``, hidden files (``.*``) left out."""
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


def nifti_header(path: str) -> tuple[tuple[int, ...], np.ndarray]:
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


def check_same_grid(path_a: str, header_a: tuple, path_b: str, header_b: tuple) -> None:
    """DatasetError unless two :func:`nifti_header` results have the same shape and affine."""
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


def check_label_values(path: str, allowed: Sequence[int]) -> None:
    """DatasetError if the label volume at ``path`` holds a value outside ``allowed``."""
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
