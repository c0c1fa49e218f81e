"""File names of saved predictions (``SaveImage`` name formatters)."""

from __future__ import annotations

import os

__all__ = ['brats_output_name']


_BRATS_SUFFIXES = ("_t1ce", "_t1", "_t2", "_flair", "_seg")


def brats_output_name(metadict: dict, saver=None) -> dict:
    """``SaveImage`` name formatter that names a prediction after its BraTS case: ``<Case>.nii.gz``.

    The image of a case is stacked from ``<Case>_t1.nii.gz`` etc.; the modality suffix is dropped so the file name is
    the case id, as the BraTS evaluation expects.

    Args:
        metadict: the image's meta data (``filename_or_obj`` is a path or a list of paths).
        saver: the calling ``SaveImage`` (unused, part of MONAI's formatter signature).
    """
    filename = metadict.get("filename_or_obj", "case")
    if isinstance(filename, (list, tuple)):
        filename = filename[0]
    name = os.path.basename(str(filename))
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    for suffix in _BRATS_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return {"subject": name, "idx": None}
