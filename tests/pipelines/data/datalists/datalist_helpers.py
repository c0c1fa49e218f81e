"""Helpers shared by the datalist tests (copying a demo dataset, rewriting a NIfTI file)."""

from __future__ import annotations

import re
import shutil

import nibabel as nib
import numpy as np


def esc(path) -> str:
    """``path`` escaped for ``pytest.raises(match=...)``."""
    return re.escape(str(path))


def copy_dataset(src: str, dst) -> str:
    """Copy the dataset folder ``src`` to ``dst``; returns ``dst`` as a string."""
    shutil.copytree(src, dst)
    return str(dst)


def rewrite_nifti(path, data=None, affine=None) -> None:
    """Rewrite a NIfTI file with new data and/or affine."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), str(path))
