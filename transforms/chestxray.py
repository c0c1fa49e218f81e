"""Chest X-ray transforms of the localisation-aware classifier (Wu, Japkowicz, Gilbert, Corizzo, Data Mining and
Knowledge Discovery 40(4):47, 2026): the NIH ChestX-ray14 tasks, the lung box and the class regions.

Tasks (class 0 is always ``No Finding``): ``ne`` No Finding / Effusion, ``np`` No Finding / Pneumothorax, ``nep``
both findings, ``neps`` also Subcutaneous Emphysema (:data:`CXR_TASKS`). On disk a class is a folder named after the
finding with spaces replaced by underscores (:func:`class_folder`).

The lung box of an image is the rectangle enclosing every lung pixel of a lung mask (both lungs, all connected
components: the union of the component boxes), or the whole image when no lung is found
(:func:`lung_box_from_mask`). Inside it each finding has a region where its Grad-CAM attention should fall
(:func:`class_region_mask`):

* Effusion: the bottom half of the box (fluid collects at the lung bases);
* Pneumothorax: the top half of the box (free air rises to the apices);
* Subcutaneous Emphysema: outside the lungs, i.e. above the box and the side margins left and right of the box
  down to the box bottom (the chest wall and the neck);
* No Finding: no region (the attention loss is 0 for those images).

Boxes follow the project's one convention (MONAI's 2D standard mode of :mod:`monai.data.box_utils`):
``[row_min, col_min, row_max, col_max]`` in the array index order of an ``(H, W)`` image, minima inclusive and
maxima exclusive (pixel corners), so ``mask[r0:r1, c0:c1]`` is the box ``[r0, c0, r1, c1]``. Halves of a box with
an odd height split at the (possibly fractional) middle row: a row belongs to a half when its centre does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.transforms.box_ops import convert_mask_to_box
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import ensure_tuple_rep

__all__ = [
    "CXR_TASKS",
    "ClassRegiond",
    "REGION_FINDINGS",
    "class_folder",
    "class_region_mask",
    "finding_from_folder",
    "lung_box_from_mask",
    "scale_box",
]

NO_FINDING = "No Finding"

#: The classification tasks of the method and their classes, in label order (class 0 is No Finding).
CXR_TASKS: dict[str, tuple[str, ...]] = {
    "ne": (NO_FINDING, "Effusion"),
    "np": (NO_FINDING, "Pneumothorax"),
    "nep": (NO_FINDING, "Effusion", "Pneumothorax"),
    "neps": (NO_FINDING, "Effusion", "Pneumothorax", "Subcutaneous Emphysema"),
}

#: The findings that have a region (every class except No Finding).
REGION_FINDINGS = ("Effusion", "Pneumothorax", "Subcutaneous Emphysema")


def class_folder(finding: str) -> str:
    """On-disk folder name of a class: the NIH finding name with spaces replaced by underscores
    (``"No Finding"`` -> ``"No_Finding"``)."""
    return finding.strip().replace(" ", "_")


def finding_from_folder(name: str) -> str:
    """The finding of a class folder (inverse of :func:`class_folder`): ``"Subcutaneous_Emphysema"`` ->
    ``"Subcutaneous Emphysema"``."""
    return name.strip().replace("_", " ")


def lung_box_from_mask(mask: Any, threshold: float = 0.5) -> np.ndarray:
    """The lung box of a lung mask: the box enclosing all pixels with ``mask >= threshold``.

    Args:
        mask: a 2D lung mask or foreground probability ``(H, W)`` (numpy or torch; a leading channel of size 1 is
            accepted).
        threshold: foreground threshold.

    Returns:
        ``[row_min, col_min, row_max, col_max]`` int64 (exclusive maxima); the whole image ``[0, 0, H, W]`` when no
        pixel reaches ``threshold``.

    Raises:
        ValueError: ``mask`` is not 2D.
    """
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"expected a 2D lung mask (H, W), got shape {tuple(array.shape)}.")
    binary = (array >= threshold).astype(np.int64)[None]
    boxes, _ = convert_mask_to_box(binary, bg_label=0)
    if len(boxes) == 0:
        return np.array([0, 0, *array.shape], dtype=np.int64)
    return np.rint(np.asarray(boxes[0], dtype=np.float64)).astype(np.int64)


def scale_box(box: Sequence[float] | np.ndarray, from_hw: Sequence[int], to_hw: Sequence[int]) -> np.ndarray:
    """Map a box between two grids of the same image (e.g. the original image and the network input after a
    resize): rows scale by ``to_h / from_h``, columns by ``to_w / from_w`` (pixel corners map to pixel corners).

    Returns:
        the box as float64 ``(4,)``.
    """
    box = np.asarray(box, dtype=np.float64).reshape(4)
    (fh, fw), (th, tw) = ensure_tuple_rep(from_hw, 2), ensure_tuple_rep(to_hw, 2)
    if min(fh, fw, th, tw) <= 0:
        raise ValueError(f"grid sizes must be positive, got {from_hw} -> {to_hw}.")
    factor = np.array([th / fh, tw / fw, th / fh, tw / fw])
    return box * factor


def class_region_mask(box: Sequence[float] | np.ndarray, finding: str, spatial_size: Sequence[int] | int) -> np.ndarray:
    """The region of ``finding`` for an image of ``spatial_size`` whose lung box is ``box`` (see the module doc).

    A pixel ``(r, c)`` belongs to a region when its centre ``(r + 0.5, c + 0.5)`` does, so fractional boxes (after
    :func:`scale_box`) are handled without rounding the box first.

    Args:
        box: ``[row_min, col_min, row_max, col_max]`` in the grid of ``spatial_size`` (clipped to it).
        finding: a class name of :data:`CXR_TASKS`.
        spatial_size: ``(H, W)`` (or one int for square images).

    Returns:
        bool ``(H, W)``; all False for No Finding.

    Raises:
        ValueError: an unknown finding or a box with no area.
    """
    h, w = (int(s) for s in ensure_tuple_rep(spatial_size, 2))
    r0, c0, r1, c1 = np.asarray(box, dtype=np.float64).reshape(4)
    r0, r1 = np.clip([r0, r1], 0, h)
    c0, c1 = np.clip([c0, c1], 0, w)
    if finding == NO_FINDING:
        return np.zeros((h, w), dtype=bool)
    if finding not in REGION_FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; expected one of {(NO_FINDING, *REGION_FINDINGS)}.")
    if not (r1 > r0 and c1 > c0):
        raise ValueError(f"the lung box {list(np.asarray(box).reshape(4))} has no area inside a {h} x {w} image.")
    rows = (np.arange(h) + 0.5)[:, None]
    cols = (np.arange(w) + 0.5)[None, :]
    in_rows = (rows > r0) & (rows < r1)
    in_cols = (cols > c0) & (cols < c1)
    middle = (r0 + r1) / 2.0
    if finding == "Effusion":
        return np.broadcast_to(in_rows & (rows > middle), (h, w)) & in_cols
    if finding == "Pneumothorax":
        return np.broadcast_to(in_rows & (rows < middle), (h, w)) & in_cols
    # Subcutaneous Emphysema: above the box, and beside it down to the box bottom
    above = np.broadcast_to(rows < r0, (h, w))
    beside = (rows < r1) & ~in_cols
    return (above | beside) & ~(in_rows & in_cols)


class ClassRegiond(MapTransform):
    """Add the class region mask of an item (:func:`class_region_mask`) as a ``(1, H, W)`` float32 tensor.

    Args:
        keys: key(s) where the region is written (usually ``"region"``).
        class_names: the task's classes in label order (:data:`CXR_TASKS`).
        spatial_size: ``(H, W)`` of the region; None takes the spatial size of ``image_key``.
        box_key: the lung box ``[row_min, col_min, row_max, col_max]`` in the grid of the region.
        label_key: the integer class index into ``class_names``.
        image_key: the image whose size is used when ``spatial_size`` is None.
        allow_missing_keys: unused (the keys are outputs); kept for the MapTransform signature.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Sequence[str],
        spatial_size: Sequence[int] | int | None = None,
        box_key: str = "lung_box",
        label_key: str = "label",
        image_key: str = "image",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.class_names = tuple(class_names)
        self.spatial_size = None if spatial_size is None else tuple(ensure_tuple_rep(spatial_size, 2))
        self.box_key, self.label_key, self.image_key = box_key, label_key, image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        size = self.spatial_size or tuple(int(s) for s in d[self.image_key].shape[1:])
        label = int(torch.as_tensor(d[self.label_key]).reshape(-1)[0])
        if not 0 <= label < len(self.class_names):
            raise ValueError(f"label {label} is not a class index of {self.class_names}.")
        box = torch.as_tensor(d[self.box_key]).detach().cpu().numpy()
        region = class_region_mask(box, self.class_names[label], size)
        for key in self.keys:  # output keys: not in the item yet
            d[key] = torch.from_numpy(region.astype(np.float32))[None]
        return d
