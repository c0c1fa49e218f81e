"""Datasets: deterministic demo data in the real on-disk layouts, datalist scanners, k-fold splits."""

from __future__ import annotations

from .datalists import (
    BRATS_LABELS,
    BRATS_MODALITIES,
    BUSI_CLASSES,
    BUSI_LESION_CLASSES,
    CHESTXRAY14_CSV,
    HVSMR_LABELS,
    MALC_LABELS,
    MASK_SUFFIXES,
    brats_datalist,
    busi_class_names,
    busi_datalist,
    chestxray14_datalist,
    hvsmr_datalist,
    image_folder_datalist,
    malc_datalist,
    segmentation_datalist,
)
from .demo import (
    DEMO_DATASETS,
    DEMO_MARKER,
    DEMO_VERSION,
    demo_root,
    ensure_demo_dataset,
    make_brats_demo,
    make_busi_demo,
    make_chestxray14_demo,
    make_hvsmr_demo,
    make_malc_demo,
)
from .errors import DatasetError
from .splits import kfold_assignments, kfold_split

__all__ = [
    "BRATS_LABELS",
    "BRATS_MODALITIES",
    "BUSI_CLASSES",
    "BUSI_LESION_CLASSES",
    "CHESTXRAY14_CSV",
    "DEMO_DATASETS",
    "DEMO_MARKER",
    "DEMO_VERSION",
    "DatasetError",
    "HVSMR_LABELS",
    "MALC_LABELS",
    "MASK_SUFFIXES",
    "brats_datalist",
    "busi_class_names",
    "busi_datalist",
    "chestxray14_datalist",
    "demo_root",
    "ensure_demo_dataset",
    "hvsmr_datalist",
    "image_folder_datalist",
    "kfold_assignments",
    "kfold_split",
    "make_brats_demo",
    "make_busi_demo",
    "make_chestxray14_demo",
    "make_hvsmr_demo",
    "make_malc_demo",
    "malc_datalist",
    "segmentation_datalist",
]
