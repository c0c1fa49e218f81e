"""Deterministic synthetic demo datasets written in the real on-disk layouts.

Each ``make_*_demo`` function writes a small dataset with the folder and file naming of the
real download, so that the datalist scanners in :mod:`pipelines.data.datalists` and the bundles
run unchanged on it. The images carry label-dependent structure that a small network can learn
in a minute on a CPU. One module per dataset (:mod:`.brats`, :mod:`.malc`, :mod:`.hvsmr`,
:mod:`.busi`, :mod:`.chestxray14`), each describing its layout and content; :mod:`.common` holds
the shared building blocks and :mod:`.cache` the cached datasets (:func:`ensure_demo_dataset`).

Randomness comes only from :class:`numpy.random.Generator` objects seeded with
``(seed, dataset, case)``, so the same seed gives byte-identical arrays and a case does not depend
on how many cases are generated.
"""

from __future__ import annotations

from .brats import make_brats_demo
from .busi import make_busi_demo
from .cache import (
    DEMO_DATASETS,
    DEMO_MARKER,
    DEMO_VERSION,
    demo_root,
    ensure_demo_dataset,
)
from .chestxray14 import (
    make_chestxray14_demo,
    make_chestxray14_shortcut_dataset,
    make_chestxray14_shortcut_demo,
)
from .hvsmr import make_hvsmr_demo
from .malc import make_malc_demo
from .montgomery import make_montgomery_demo
from .scanner_frames import make_scanner_frame_demo

__all__ = [
    "DEMO_DATASETS",
    "DEMO_MARKER",
    "DEMO_VERSION",
    "demo_root",
    "ensure_demo_dataset",
    "make_brats_demo",
    "make_busi_demo",
    "make_chestxray14_demo",
    "make_chestxray14_shortcut_dataset",
    "make_chestxray14_shortcut_demo",
    "make_hvsmr_demo",
    "make_malc_demo",
    "make_montgomery_demo",
    "make_scanner_frame_demo",
]
