"""Locating the bundles that ship with the repository."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "bundle_root", "brats_output_name", "check_output_dir", "list_bundles"]

#: Repository root when the packages are used from a clone (editable install or ``PYTHONPATH``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def bundle_root(name: str) -> str:
    """Absolute path of ``bundles/<name>``.

    Looks next to the packages first (a clone), then under the current directory.

    Raises:
        FileNotFoundError: naming both places when the bundle is in neither.
    """
    candidates = [REPO_ROOT / "bundles" / name, Path(os.getcwd()) / "bundles" / name]
    for path in candidates:
        if (path / "configs").is_dir():
            return str(path)
    raise FileNotFoundError(f"bundle {name!r} not found; looked in {', '.join(str(p) for p in candidates)}.")


def list_bundles() -> list[str]:
    """Names of the bundles in ``bundles/`` of the repository."""
    root = REPO_ROOT / "bundles"
    return sorted(p.name for p in root.iterdir() if (p / "configs").is_dir()) if root.is_dir() else []


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


def check_output_dir(output_dir: str, *input_dirs: str) -> str:
    """Refuse an output folder that is, or lies inside, one of the input folders; return it otherwise.

    Inference writes files named after the inputs; writing them into the input tree could overwrite a user's
    data or be read back as inputs by the next run.

    Raises:
        ValueError: naming both folders.
    """
    out = Path(output_dir).resolve()
    for folder in input_dirs:
        src = Path(folder).resolve()
        if out == src or src in out.parents:
            raise ValueError(
                f"output folder {out} is inside the input folder {src}; choose another (e.g. --pred_dir runs/preds)"
                " so that no input file can be overwritten."
            )
    return str(output_dir)
