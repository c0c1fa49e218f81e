"""Locating the bundles that ship with the repository; output folders that never overwrite inputs."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ['REPO_ROOT', 'bundle_root', 'check_output_dir', 'list_bundles']


#: Repository root when the packages are used from a clone (editable install or ``PYTHONPATH``).
REPO_ROOT = Path(__file__).resolve().parents[2]


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
