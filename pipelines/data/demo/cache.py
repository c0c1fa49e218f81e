"""Cached demo datasets: :func:`ensure_demo_dataset` generates a demo dataset once per argument set.

A complete dataset folder holds :data:`DEMO_MARKER` with the generator's arguments; a folder with
``.demo_incomplete`` holds an interrupted generation. The folders live under :func:`demo_root`
(one per dataset name) unless a root is given.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .brats import make_brats_demo
from .busi import make_busi_demo
from .chestxray14 import make_chestxray14_demo, make_chestxray14_shortcut_dataset
from .hvsmr import make_hvsmr_demo
from .malc import make_malc_demo
from .montgomery import make_montgomery_demo
from .scanner_frames import make_scanner_frame_demo

__all__ = ["DEMO_DATASETS", "DEMO_MARKER", "DEMO_VERSION", "demo_root", "ensure_demo_dataset"]

#: Bumped whenever the content of a generator changes, so cached demo data is regenerated.
DEMO_VERSION = 1
#: Written last into a complete demo dataset; holds the generator arguments as JSON.
DEMO_MARKER = ".demo_complete"
#: Written first and removed last; marks a folder as a (possibly interrupted) demo generation.
_DEMO_PARTIAL = ".demo_incomplete"

DEMO_DATASETS: dict[str, Callable[..., str]] = {
    "brats": make_brats_demo,
    "malc": make_malc_demo,
    "hvsmr": make_hvsmr_demo,
    "busi": make_busi_demo,
    "chestxray14": make_chestxray14_demo,
    "chestxray14_shortcut": make_chestxray14_shortcut_dataset,
    "montgomery": make_montgomery_demo,
    "busi_frames": make_scanner_frame_demo,
}


#: Datasets whose useful folder lies inside the generated root: name -> its path relative to the root, from the
#: generator's arguments (defaults filled in). ``chestxray14_shortcut`` caches the raw and the prepared dataset and
#: gives the prepared task folder.
DEMO_RESULT_DIRS: dict[str, Callable[[dict[str, Any]], str]] = {
    "chestxray14_shortcut": lambda kwargs: os.path.join("prepared", str(kwargs["task"])),
}


def demo_root() -> str:
    """Folder holding the cached demo datasets.

    Returns:
        ``$PIPELINES_DEMO_DIR`` if set, else ``~/.cache/attention-mis/demo``.
    """
    return os.path.expanduser(
        os.environ.get("PIPELINES_DEMO_DIR") or os.path.join("~", ".cache", "attention-mis", "demo")
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_marker(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_demo_dataset(name: str, root: str | None = None, **kwargs: Any) -> str:
    """Generate a demo dataset unless an identical one is already complete on disk.

    A complete dataset holds ``.demo_complete``, written last, with the generator's name, its
    full arguments (defaults filled in) and :data:`DEMO_VERSION`. When the marker matches, nothing
    is done. Otherwise the dataset is (re)generated: a folder known to hold an older or
    interrupted demo generation (it has a ``.demo_complete`` or ``.demo_incomplete`` file) is
    emptied first; any other folder is written into without deleting anything. Concurrent calls
    on the same root are serialised with a lock file next to it (``<root>.lock``).

    Args:
        name: one of ``"brats"``, ``"malc"``, ``"hvsmr"``, ``"busi"``, ``"chestxray14"``, ``"montgomery"``,
            ``"chestxray14_shortcut"``, ``"busi_frames"`` (:func:`.scanner_frames.make_scanner_frame_demo`).
        root: output folder; defaults to ``os.path.join(demo_root(), name)``.
        **kwargs: arguments of the matching ``make_<name>_demo`` (``seed``, sizes, ...).

    Returns:
        ``root`` as a string (for ``"chestxray14_shortcut"``: the prepared task folder inside it, see
        :data:`DEMO_RESULT_DIRS`).

    Raises:
        ValueError: for an unknown ``name`` or arguments the generator does not take.
    """
    if name not in DEMO_DATASETS:
        raise ValueError(f"unknown demo dataset {name!r}; expected one of {sorted(DEMO_DATASETS)}.")
    generator = DEMO_DATASETS[name]
    try:
        bound = inspect.signature(generator).bind(os.devnull, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for demo dataset {name!r}: {e}.") from e
    bound.apply_defaults()
    params = {k: _jsonable(v) for k, v in bound.arguments.items() if k != "root"}
    expected = {"name": name, "version": DEMO_VERSION, "kwargs": params}

    root = os.path.abspath(os.fspath(root) if root is not None else os.path.join(demo_root(), name))
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with _file_lock(root.rstrip(os.sep) + ".lock"):
        marker = os.path.join(root, DEMO_MARKER)
        if _read_marker(marker) == expected:
            return os.path.join(root, DEMO_RESULT_DIRS[name](params)) if name in DEMO_RESULT_DIRS else root
        partial = os.path.join(root, _DEMO_PARTIAL)
        if os.path.isdir(root) and (os.path.exists(marker) or os.path.exists(partial)):
            shutil.rmtree(root)  # an older or interrupted demo generation: start afresh
        os.makedirs(root, exist_ok=True)
        with open(partial, "w") as f:
            json.dump(expected, f)
        generator(root, **kwargs)
        with open(marker, "w") as f:
            json.dump(expected, f)
        os.remove(partial)
    return os.path.join(root, DEMO_RESULT_DIRS[name](params)) if name in DEMO_RESULT_DIRS else root
