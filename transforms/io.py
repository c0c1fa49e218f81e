"""Reading one image file for prediction: PNG / JPEG / DICOM -> one float32 channel ``(1, H, W)`` in [0, 255].

:func:`load_input_image` is the reader of the folder predictors (:mod:`pipelines.predictors.folder`) and of the
detection transforms; :class:`LoadFramed` is its MONAI dictionary transform (a ``MetaTensor`` with the file name and
the original ``spatial_shape`` in its meta data, as MONAI's ``LoadImaged`` records them).

DICOM display follows the grayscale pipeline of DICOM PS3.3 (C.7.6.3 Image Pixel, C.11.2 VOI LUT): Rescale Slope /
Intercept, the first VOI window (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``), MONOCHROME1 shown inverted.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from .busi import load_busi_image

__all__ = ["LoadFramed", "load_input_image"]


# DICOM attributes of the grayscale display pipeline (PS3.3 C.7.6.3 Image Pixel, C.11.2 VOI LUT), as ITK metadata keys
_PHOTOMETRIC, _BITS_STORED, _PIXEL_REPRESENTATION = "0028|0004", "0028|0101", "0028|0103"
_WINDOW_CENTER, _WINDOW_WIDTH, _VOI_LUT_FUNCTION = "0028|1050", "0028|1051", "0028|1056"
_RESCALE_INTERCEPT, _RESCALE_SLOPE = "0028|1052", "0028|1053"


def _dicom_number(meta: Mapping, tag: str, default: float | None = None) -> float | None:
    """First value of a numeric DICOM attribute in ITK's metadata (``"40\\400 "`` -> 40.0); ``default`` when it is
    absent or not a finite number."""
    text = str(meta.get(tag, "")).split("\\")[0].strip()
    try:
        value = float(text)
    except ValueError:
        return default
    return value if np.isfinite(value) else default


def _voi_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray | None:
    """The VOI window of DICOM PS3.3 C.11.2.1.2 (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``; any other function is
    read as ``LINEAR``, the default) from modality values onto [0, 255]; None for a width the function forbids."""
    if function == "SIGMOID":
        if width <= 0:
            return None
        with np.errstate(over="ignore"):
            return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return None if width <= 0 else np.clip((values - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width < 1:
        return None
    if width == 1:  # the linear ramp degenerates to a step at c - 0.5
        return np.where(values > center - 0.5, 255.0, 0.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0) * 255.0


def _grayscale_display(values: np.ndarray, meta: Mapping) -> np.ndarray:
    """A grayscale DICOM frame as ITK read it -> display values in [0, 255], bright = dense.

    ITK's GDCM reader applies Rescale Slope / Intercept (modality values) and converts MONOCHROME1 to MONOCHROME2 by
    inverting the *stored* values (``s -> 2**BitsStored - 1 - s``, ``s -> -1 - s`` for signed pixels) before the
    rescale. The modality values are recovered from that, windowed with the first Window Center / Width, and the
    window's output is inverted for MONOCHROME1 (whose minimum is white after the VOI transform), as a DICOM viewer
    shows the image; without a usable window the modality values are min-max scaled instead.
    """
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values)
    monochrome1 = str(meta.get(_PHOTOMETRIC, "")).strip().upper() == "MONOCHROME1"
    if monochrome1:
        slope, intercept = _dicom_number(meta, _RESCALE_SLOPE, 1.0), _dicom_number(meta, _RESCALE_INTERCEPT, 0.0)
        signed = str(meta.get(_PIXEL_REPRESENTATION, "0")).strip() == "1"
        largest = -1.0 if signed else 2.0 ** int(_dicom_number(meta, _BITS_STORED, 16.0)) - 1.0
        values = (slope * largest + 2.0 * intercept) - values  # undo ITK's inversion: the modality values again
    center, width = _dicom_number(meta, _WINDOW_CENTER), _dicom_number(meta, _WINDOW_WIDTH)
    function = str(meta.get(_VOI_LUT_FUNCTION, "")).strip().upper()
    shown = None if center is None or width is None else _voi_window(values, center, width, function)
    if shown is None:
        lo, hi = float(values.min()), float(values.max())
        shown = (values - lo) * (255.0 / (hi - lo))
    return 255.0 - shown if monochrome1 else shown


def load_input_image(path: str) -> np.ndarray:
    """One image as float32 ``(1, H, W)`` in [0, 255], for radiographs with bright = dense.

    * PNG / JPEG: :func:`transforms.busi.load_busi_image` (one channel: alpha dropped, e.g. of the RGBA PNGs among
      NIH ChestX-ray14, colour -> ITU-R 601 luminance, 16-bit values scaled by 255 / 65535).
    * DICOM (one frame) via MONAI's ``LoadImage`` with the ITK reader. Grayscale: Rescale Slope / Intercept applied
      (modality values), then the first Window Center / Width of the file (VOI LUT Function ``LINEAR``,
      ``LINEAR_EXACT`` or ``SIGMOID``, DICOM PS3.3 C.11.2.1.2) or, without a window, a min-max rescale; MONOCHROME1
      (minimum is white) is inverted after the window, so that dense is bright as in MONOCHROME2. A VOI LUT Sequence
      is not read (ITK's metadata does not carry sequences). RGB: luminance, min-max rescaled. A constant frame
      gives zeros.

    Raises:
        ValueError: a DICOM file with several frames or an unsupported number of components (naming the file).
    """
    if not path.lower().endswith(".dcm"):
        return load_busi_image(path)
    from monai.data.utils import is_no_channel
    from monai.transforms import LoadImage

    data = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=False)(path)
    img = np.asarray(data, dtype=np.float32)
    grayscale = True
    # (x, y[, frames]) grayscale or (x, y[, frames], components): only the reader's channel flag tells a 3- or
    # 4-frame grayscale volume from one RGB(A) frame.
    if not is_no_channel(data.meta.get("original_channel_dim", float("nan"))):
        if img.shape[-1] in (3, 4):  # RGB(A)
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            grayscale = False
        elif img.shape[-1] == 1:
            img = img[..., 0]
        else:
            raise ValueError(f"{path}: unsupported number of components {img.shape[-1]} (shape {tuple(img.shape)}).")
    while img.ndim > 2 and img.shape[-1] == 1:  # one frame: ITK reads a DICOM slice as (x, y, 1)
        img = img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"{path}: expected one 2D frame, got shape {tuple(data.shape)}.")
    img = img.T  # ITK arrays are (x, y); images are (rows, columns)
    if grayscale:
        return _grayscale_display(img, data.meta)[None].astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)
    return img[None].astype(np.float32)


class LoadFramed(MapTransform):
    """Load the image file at ``data[key]`` with :func:`load_input_image` (PNG / JPEG / DICOM).

    Each key's path is replaced by a ``MetaTensor`` ``(1, H, W)`` float32 in [0, 255] whose meta data hold
    ``filename_or_obj`` (the path) and ``spatial_shape`` (``(H, W)``, the original grid), so that invertible
    transforms after it can be undone to the frame's own size.

    Args:
        keys: keys of the file paths.
        allow_missing_keys: don't raise an exception if a key is missing.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: an unsupported file (see :func:`load_input_image`; the message names the file).
    """

    def __init__(self, keys: KeysCollection = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = os.fspath(d[key])
            image = load_input_image(path)
            meta = {"filename_or_obj": path, "spatial_shape": np.asarray(image.shape[1:])}
            d[key] = MetaTensor(torch.from_numpy(image), meta=meta)
        return d
