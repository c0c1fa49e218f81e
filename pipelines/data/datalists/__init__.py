"""Datalist scanners: find the cases of a dataset in its real on-disk layout and validate them.

One module per dataset: :mod:`.brats` (BraTS 2018), :mod:`.segmentation` (``images/`` +
``masks/`` NIfTI datasets: MALC, HVSMR 2016, and plain image folders), :mod:`.busi` (BUSI) and
:mod:`.chestxray14` (NIH ChestX-ray14), :mod:`.detection` (lesion boxes: BUSI, scanner frames + a box file);
:mod:`.common` holds the shared checks.

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

from .brats import BRATS_LABELS, BRATS_MODALITIES, brats_datalist
from .busi import BUSI_CLASSES, BUSI_LESION_CLASSES, busi_class_names, busi_datalist
from .chestxray14 import CHESTXRAY14_CSV, chestxray14_datalist
from .chestxray14_prepared import (
    CXR_SPLITS,
    LUNG_BOX_COLUMNS,
    LUNG_BOX_FILE,
    chestxray14_prepared_datalist,
    read_lung_boxes,
)
from .detection import (
    BOX_CSV,
    BOX_CSV_COLUMNS,
    COCO_JSON,
    busi_detection_datalist,
    detection_datalist,
    detection_split,
    frame_detection_datalist,
)
from .montgomery import MONTGOMERY_LAYOUT, montgomery_datalist
from .segmentation import (
    HVSMR_LABELS,
    MALC_LABELS,
    MASK_SUFFIXES,
    hvsmr_datalist,
    image_folder_datalist,
    malc_datalist,
    segmentation_datalist,
)

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
    "MONTGOMERY_LAYOUT",
    "montgomery_datalist",
    "CXR_SPLITS",
    "LUNG_BOX_COLUMNS",
    "LUNG_BOX_FILE",
    "chestxray14_prepared_datalist",
    "read_lung_boxes",
    "hvsmr_datalist",
    "image_folder_datalist",
    "malc_datalist",
    "segmentation_datalist",
    "BOX_CSV",
    "BOX_CSV_COLUMNS",
    "COCO_JSON",
    "busi_detection_datalist",
    "detection_datalist",
    "detection_split",
    "frame_detection_datalist",
]
