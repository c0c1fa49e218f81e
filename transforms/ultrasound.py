"""Ultrasound frame transforms: the scanner-frame crop, CLAHE, and resize / affine augmentation that moves boxes.

A scanner exports the whole screen: the ultrasound image sits in a frame of GUI (text rows, scale markers, colour
bars, a Doppler scale). :func:`scanner_frame_bounds` finds the image area as the seed of the detection method does
(methods.md, method 5): binarise (``gray > threshold``), start from the centre row and column and scan outward until a
line (row or column) whose count of "on" pixels is below ``min_fraction`` of the line length; the lines just inside
those are the crop's edges. Counting pixels per line (rather than stopping at the first black pixel) keeps a centre
line through a dark lesion going, and cuts the GUI text rows near the border (their count is low). A frame whose
centre line is already below the threshold (a mostly black or blank frame) or whose crop would be smaller than
``min_size`` of the frame falls back to the whole frame instead of an empty crop.

:class:`ScannerFrameCrop` is a MONAI ``Crop`` (the base of ``SpatialCrop``): it records itself on a ``MetaTensor``, so
``Compose.inverse`` / ``Invertd`` pad a prediction back into the whole frame. :class:`ScannerFrameCropd` also shifts
boxes with the image, clips them to the crop and drops the ones left empty together with their labels, and records the
crop box (``crop_box``) in the data.

Boxes are MONAI's 2D standard mode ``xyxy`` in array index order of a ``(H, W)`` image, ``[row_min, col_min,
row_max, col_max]``, pixel corners, exclusive maxima (:mod:`transforms.busi`). MONAI's detection box transforms
(:mod:`monai.apps.detection.transforms`) index box coordinate ``i`` by spatial axis ``i`` of the channel-first image,
which is this same order: ``RandFlipBoxd(spatial_axis=1)`` is a left-right flip of image and boxes alike.
:class:`ResizeBoxd` and :class:`RandAffineBoxd` add what MONAI lacks: a resize to a fixed grid and a random affine
(scale, shift, optional rotation) that map the boxes with the image.

:class:`CLAHE` is contrast-limited adaptive histogram equalisation (Zuiderveld, Graphics Gems IV, 1994) through
:func:`skimage.exposure.equalize_adapthist`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.transforms.box_ops import zoom_boxes
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data.box_utils import spatial_crop_boxes
from monai.transforms import (
    Crop,
    InvertibleTransform,
    MapTransform,
    RandAffine,
    RandomizableTransform,
    Resize,
    Transform,
)
from monai.utils import (
    TraceKeys,
    TransformBackends,
    convert_to_dst_type,
    ensure_tuple,
    ensure_tuple_rep,
)

__all__ = [
    "CLAHE",
    "CLAHEd",
    "RandAffineBoxd",
    "ResizeBoxd",
    "ScannerFrameCrop",
    "ScannerFrameCropd",
    "scanner_frame_bounds",
]


# --------------------------------------------------------------------------------------------
# the scanner-frame crop
# --------------------------------------------------------------------------------------------
def _scan_out(counts: np.ndarray, centre: int, minimum: float) -> tuple[int, int]:
    """``[start, end)`` of the run of lines around ``centre`` whose count is at least ``minimum``; ``(0, 0)`` when
    the ``centre`` line itself is below it."""
    if counts[centre] < minimum:
        return 0, 0
    low = np.flatnonzero(counts[:centre] < minimum)
    high = np.flatnonzero(counts[centre:] < minimum)
    return (int(low[-1]) + 1 if low.size else 0), (centre + int(high[0]) if high.size else len(counts))


def scanner_frame_bounds(
    image: NdarrayOrTensor,
    threshold: float = 0.0,
    min_fraction: float = 0.1,
    min_size: float = 0.25,
) -> tuple[int, int, int, int]:
    """The scanner's image area in a screen capture, ``(r0, c0, r1, c1)`` (exclusive ends, ``image[r0:r1, c0:c1]``).

    The frame is binarised (``image > threshold``; several channels: any channel). Rows are scanned outward from the
    centre row until a row with fewer than ``min_fraction * W`` "on" pixels, columns from the centre column until one
    with fewer than ``min_fraction * H``; then the columns are scanned again counting only the rows found, and the
    rows counting only the columns found, so that GUI text above and below the image does not keep a black gap
    column "on" (and vice versa).

    Args:
        image: ``(H, W)`` or ``(C, H, W)`` gray values (any range; ``threshold`` is in the same units).
        threshold: pixels above it are "on" (the seed binarises at ``gray > 0``; JPEG frames may need a few grey
            levels more, their black is not exactly 0).
        min_fraction: a line whose "on" count is below this fraction of its length ends the scan. ``0`` never ends
            it: the whole frame (the crop switched off).
        min_size: the smallest crop accepted, as a fraction of the frame's height and width; a smaller crop (or a
            centre line below ``min_fraction``: a mostly black, blank or dark frame) gives the whole frame.

    Returns:
        ``(r0, c0, r1, c1)``; ``(0, 0, H, W)`` when the crop falls back to the whole frame.

    Raises:
        ValueError: ``image`` is not 2D or channel-first 2D, or a fraction outside [0, 1].
    """
    arr = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    if arr.ndim == 3:
        arr = arr.max(axis=0)
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (C, H, W) image, got shape {tuple(arr.shape)}.")
    for name, value in (("min_fraction", min_fraction), ("min_size", min_size)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")
    height, width = arr.shape
    whole = (0, 0, height, width)
    if min_fraction <= 0 or height == 0 or width == 0:
        return whole
    on = arr > threshold
    rc, cc = height // 2, width // 2
    r0, r1 = _scan_out(on.sum(axis=1), rc, min_fraction * width)
    c0, c1 = _scan_out(on.sum(axis=0), cc, min_fraction * height)
    if r1 <= r0 or c1 <= c0:  # the centre row or column itself is below the threshold
        return whole
    # second pass: each direction counted inside the other's run only
    c0, c1 = _scan_out(on[r0:r1].sum(axis=0), cc, min_fraction * (r1 - r0))
    if c1 <= c0:
        return whole
    r0, r1 = _scan_out(on[:, c0:c1].sum(axis=1), rc, min_fraction * (c1 - c0))
    if r1 - r0 < max(1.0, min_size * height) or c1 - c0 < max(1.0, min_size * width):
        return whole
    return int(r0), int(c0), int(r1), int(c1)


class ScannerFrameCrop(Crop):
    """Crop a channel-first ``(C, H, W)`` frame to its scanner image area (:func:`scanner_frame_bounds` of the
    channel maximum). A MONAI ``Crop``: on a ``MetaTensor`` it records itself (the amounts cropped), so
    :meth:`inverse`, ``Compose.inverse`` and ``Invertd`` pad a map of the crop back into the whole frame with zeros.

    Args:
        threshold / min_fraction / min_size: see :func:`scanner_frame_bounds`.
        lazy: MONAI's lazy resampling flag.
    """

    def __init__(
        self, threshold: float = 0.0, min_fraction: float = 0.1, min_size: float = 0.25, lazy: bool = False
    ) -> None:
        super().__init__(lazy=lazy)
        self.threshold, self.min_fraction, self.min_size = float(threshold), float(min_fraction), float(min_size)

    def bounds(self, img: NdarrayOrTensor) -> tuple[int, int, int, int]:
        """``(r0, c0, r1, c1)`` of ``img`` ``(C, H, W)``."""
        return scanner_frame_bounds(img, self.threshold, self.min_fraction, self.min_size)

    def __call__(  # type: ignore[override]
        self, img: torch.Tensor, bounds: Sequence[int] | None = None, lazy: bool | None = None
    ) -> torch.Tensor:
        """Crop ``img`` to ``bounds`` (``(r0, c0, r1, c1)``; default :meth:`bounds` of ``img``)."""
        r0, c0, r1, c1 = self.bounds(img) if bounds is None else (int(b) for b in bounds)
        slices = self.compute_slices(roi_start=(r0, c0), roi_end=(r1, c1))
        return super().__call__(img=img, slices=slices, lazy=lazy)


def _as_boxes(boxes: Any) -> NdarrayOrTensor:
    """Boxes as an ``(N, 4)`` array or tensor; a list (of a datalist) becomes a float32 tensor, ``[]`` ``(0, 4)``."""
    if isinstance(boxes, (np.ndarray, torch.Tensor)):
        return boxes.reshape(-1, 4)
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


def _keep(values: Any, keep: NdarrayOrTensor) -> NdarrayOrTensor:
    """``values[keep]`` for an array, tensor or list (a list becomes an int64 tensor)."""
    keep_np = np.asarray(keep.detach().cpu() if isinstance(keep, torch.Tensor) else keep, dtype=bool)
    if isinstance(values, torch.Tensor):
        return values[torch.as_tensor(keep_np, device=values.device)]
    if isinstance(values, np.ndarray):
        return values[keep_np]
    return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1)[keep_np])


class ScannerFrameCropd(MapTransform, InvertibleTransform):
    """Dictionary :class:`ScannerFrameCrop`: the crop is found on the first of ``keys`` and applied to all of them;
    the boxes of ``box_keys`` are shifted into the crop, clipped to it, and boxes left empty (less than one pixel
    wide or high) are dropped together with the entries of ``label_keys`` (MONAI's ``spatial_crop_boxes``).
    ``data[crop_box_key]`` is the crop, float32 ``(4,)`` ``[r0, c0, r1, c1]`` in the frame (the whole frame when
    it falls back); the ``MetaTensor`` images record it among their applied operations.

    Args:
        keys: image keys, channel-first ``(C, H, W)``.
        box_keys: keys of ``(N, 4)`` boxes (or lists of them) in the standard mode, on the grid of
            ``box_ref_image_keys``; a box key missing from the data is skipped (``()``: images only).
        box_ref_image_keys: the image the boxes belong to (one of ``keys``).
        label_keys: per-box values (labels, scores) kept or dropped with their boxes (missing ones skipped).
        crop_box_key: where the crop box is recorded (None: not recorded).
        threshold / min_fraction / min_size: see :func:`scanner_frame_bounds` (``min_fraction=0``: no crop, the
            whole frame is recorded).
        allow_missing_keys: don't raise an exception if a key is missing.

    Raises:
        ValueError: ``box_ref_image_keys`` is not among ``keys``.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        box_keys: KeysCollection = "box",
        box_ref_image_keys: str = "image",
        label_keys: KeysCollection = "label",
        crop_box_key: str | None = "crop_box",
        threshold: float = 0.0,
        min_fraction: float = 0.1,
        min_size: float = 0.25,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.box_keys, self.label_keys = ensure_tuple(box_keys), ensure_tuple(label_keys)
        if self.box_keys and box_ref_image_keys not in self.keys:
            raise ValueError(f"box_ref_image_keys {box_ref_image_keys!r} must be one of keys {self.keys}.")
        self.box_ref_image_keys, self.crop_box_key = box_ref_image_keys, crop_box_key
        self.cropper = ScannerFrameCrop(threshold, min_fraction, min_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == ():
            return d
        bounds = self.cropper.bounds(d[first])
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key], bounds)
        r0, c0, r1, c1 = bounds
        for box_key in self.box_keys:
            if box_key not in d:
                continue
            boxes, keep = spatial_crop_boxes(_as_boxes(d[box_key]), (r0, c0), (r1, c1), remove_empty=True)
            d[box_key] = boxes
            for label_key in self.label_keys:
                if label_key in d:
                    d[label_key] = _keep(d[label_key], keep)
            self.push_transform(d, box_key, extra_info={"crop_box": list(bounds)})
        if self.crop_box_key is not None:
            d[self.crop_box_key] = torch.tensor(bounds, dtype=torch.float32)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Images padded back into the frame with zeros; boxes shifted back (dropped boxes stay dropped)."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        for box_key in self.box_keys:
            if box_key not in d:
                continue
            r0, c0, _, _ = self.pop_transform(d, box_key)[TraceKeys.EXTRA_INFO]["crop_box"]
            shift = convert_to_dst_type(np.array([r0, c0, r0, c0], dtype=np.float32), _as_boxes(d[box_key]))[0]
            d[box_key] = _as_boxes(d[box_key]) + shift
        return d


# --------------------------------------------------------------------------------------------
# resize and affine with boxes
# --------------------------------------------------------------------------------------------
class ResizeBoxd(MapTransform, InvertibleTransform):
    """Resize images to ``spatial_size`` (MONAI's ``Resize``, recorded for ``Invertd``) and scale their boxes by the
    same factors (MONAI's ``zoom_boxes``): a box ``[r0, c0, r1, c1]`` of an ``(H, W)`` image becomes
    ``[r0 * S0 / H, c0 * S1 / W, r1 * S0 / H, c1 * S1 / W]`` (pixel corners scale exactly with the grid).

    Args:
        image_keys: image keys, channel-first.
        box_keys: box keys (standard mode).
        box_ref_image_keys: the image each box key belongs to (one, or one per box key).
        spatial_size: output ``(S0, S1)`` (an int: square).
        mode: interpolation of the images (one, or one per image key).
        anti_aliasing: Gaussian smoothing before down-sampling (one, or one per image key).
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    def __init__(
        self,
        image_keys: KeysCollection,
        box_keys: KeysCollection,
        box_ref_image_keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        mode: Sequence[str] | str = "bilinear",
        anti_aliasing: Sequence[bool] | bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        self.image_keys, self.box_keys = ensure_tuple(image_keys), ensure_tuple(box_keys)
        super().__init__(self.image_keys + self.box_keys, allow_missing_keys)
        self.box_ref_image_keys = ensure_tuple_rep(box_ref_image_keys, len(self.box_keys))
        self.spatial_size = tuple(int(s) for s in ensure_tuple_rep(spatial_size, 2))
        self.mode = ensure_tuple_rep(mode, len(self.image_keys))
        self.anti_aliasing = ensure_tuple_rep(anti_aliasing, len(self.image_keys))
        self.resizer = Resize(self.spatial_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for box_key, ref_key in zip(self.box_keys, self.box_ref_image_keys):
            if box_key not in d:
                continue
            src = tuple(int(s) for s in d[ref_key].shape[1:])
            zoom = [t / float(s) for s, t in zip(src, self.spatial_size)]
            d[box_key] = zoom_boxes(_as_boxes(d[box_key]), zoom)
            self.push_transform(d, box_key, extra_info={"zoom": zoom, "src_spatial_size": src, "type": "box_key"})
        for key, mode, anti_aliasing in zip(self.image_keys, self.mode, self.anti_aliasing):
            if key in d:
                d[key] = self.resizer(d[key], mode=mode, anti_aliasing=anti_aliasing)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.image_keys:
            if key in d:
                d[key] = self.resizer.inverse(d[key])
        for box_key in self.box_keys:
            if box_key in d:
                zoom = self.pop_transform(d, box_key)[TraceKeys.EXTRA_INFO]["zoom"]
                d[box_key] = zoom_boxes(_as_boxes(d[box_key]), [1.0 / z for z in zoom])
        return d


def _affine_boxes(boxes: NdarrayOrTensor, matrix: np.ndarray, spatial_size: Sequence[int]) -> NdarrayOrTensor:
    """Boxes under the image affine of MONAI's ``RandAffine`` on a ``spatial_size`` grid (output = input size).

    MONAI's ``matrix`` maps an output pixel to the input pixel it samples, in coordinates centred on the grid
    (pixel index ``i`` at ``i - (n - 1) / 2``, i.e. pixel corner ``b`` at ``b - n / 2``). The four corners of each
    box are mapped by its inverse and enclosed by their min / max box (exact for scaling and shifts; a rotated box's
    enclosing box is larger than the object's tight box)."""
    b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    centre = np.asarray(spatial_size, dtype=np.float64) / 2.0
    inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    corners = np.stack([b[:, [0, 1]], b[:, [0, 3]], b[:, [2, 1]], b[:, [2, 3]]], axis=1) - centre  # (N, 4, 2)
    mapped = corners @ inverse[:2, :2].T + inverse[:2, 2] + centre
    out = np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1).astype(np.float32).reshape(-1, 4)
    return convert_to_dst_type(out, boxes, dtype=boxes.dtype)[0]


class RandAffineBoxd(RandomizableTransform, MapTransform):
    """Random affine of images and their boxes: MONAI's ``RandAffine`` on the images (same size out), the boxes
    mapped by the same matrix (the corners' enclosing box), clipped to the image, boxes left empty dropped with their
    labels (``spatial_crop_boxes``).

    Scaling and shifts keep boxes tight. A rotation makes the box of the rotated corners larger than the rotated
    object's own box (a w x w square turned by a degrees grows by about ``w * sin(a)`` per side: 9 % at 5 degrees), so
    ``rotate_range`` is off by default.

    Args:
        image_keys: image keys, channel-first, on one grid.
        box_keys: box keys (standard mode) on that grid.
        label_keys: per-box values dropped with their boxes.
        prob: probability of the affine.
        rotate_range / scale_range / translate_range: MONAI's ``RandAffine`` ranges (radians; scale offsets about 1,
            ``scale_range=0.1`` is a factor in [0.9, 1.1]; shifts in pixels).
        mode: interpolation of the images (one, or one per image key).
        padding_mode: MONAI's padding outside the image.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    def __init__(
        self,
        image_keys: KeysCollection,
        box_keys: KeysCollection,
        label_keys: KeysCollection = (),
        prob: float = 0.5,
        rotate_range: Sequence[float] | float = 0.0,
        scale_range: Sequence[float] | float = 0.1,
        translate_range: Sequence[float] | float = 0.0,
        mode: Sequence[str] | str = "bilinear",
        padding_mode: str = "zeros",
        allow_missing_keys: bool = False,
    ) -> None:
        self.image_keys, self.box_keys = ensure_tuple(image_keys), ensure_tuple(box_keys)
        MapTransform.__init__(self, self.image_keys + self.box_keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_keys = ensure_tuple(label_keys)
        self.mode = ensure_tuple_rep(mode, len(self.image_keys))
        self.rand_affine = RandAffine(
            prob=1.0, rotate_range=rotate_range, scale_range=ensure_tuple_rep(scale_range, 2),
            translate_range=ensure_tuple_rep(translate_range, 2), padding_mode=padding_mode,
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandAffineBoxd:
        super().set_random_state(seed, state)
        self.rand_affine.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        images = [k for k in self.image_keys if k in d]
        if not self._do_transform or not images:
            return d
        self.rand_affine.randomize()
        size = tuple(int(s) for s in d[images[0]].shape[1:])
        for key, mode in zip(self.image_keys, self.mode):
            if key in d:
                d[key] = self.rand_affine(d[key], mode=mode, randomize=False)
        matrix = np.asarray(self.rand_affine.rand_affine_grid.get_transformation_matrix().cpu(), dtype=np.float64)
        for box_key in self.box_keys:
            if box_key not in d:
                continue
            boxes = _affine_boxes(_as_boxes(d[box_key]), matrix, size)
            d[box_key], keep = spatial_crop_boxes(boxes, (0, 0), size, remove_empty=True)
            for label_key in self.label_keys:
                if label_key in d:
                    d[label_key] = _keep(d[label_key], keep)
        return d


# --------------------------------------------------------------------------------------------
# CLAHE
# --------------------------------------------------------------------------------------------
class CLAHE(Transform):
    """Contrast-limited adaptive histogram equalisation of each channel (:func:`skimage.exposure.equalize_adapthist`).

    The input is divided by ``in_max`` (255 for images in [0, 255], 1 for [0, 1]) and clipped to [0, 1]; the output
    has the input's shape and type (a ``MetaTensor`` keeps its meta data), float32 in [0, 1].

    Args:
        clip_limit: skimage's normalised clip limit in (0, 1] (higher: more contrast). OpenCV's ``clipLimit`` c with
            256 bins corresponds to about ``c / 256`` (OpenCV's common 2.0 is about 0.008).
        kernel_size: tile size in pixels (an int, or one per spatial axis); None: 1/8 of each side (OpenCV's 8 x 8
            tile grid).
        nbins: histogram bins.
        in_max: the input's white level.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        clip_limit: float = 0.01,
        kernel_size: int | Sequence[int] | None = None,
        nbins: int = 256,
        in_max: float = 255.0,
    ) -> None:
        if not 0.0 < clip_limit <= 1.0:
            raise ValueError(f"clip_limit must be in (0, 1], got {clip_limit}.")
        if in_max <= 0:
            raise ValueError(f"in_max must be positive, got {in_max}.")
        self.clip_limit, self.kernel_size, self.nbins, self.in_max = float(clip_limit), kernel_size, int(nbins), in_max

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """``img`` ``(C, H, W)`` -> CLAHE of each channel, float32 in [0, 1]."""
        from skimage.exposure import equalize_adapthist

        arr = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img, dtype=np.float64)
        arr = np.clip(arr / float(self.in_max), 0.0, 1.0)
        out = np.empty(arr.shape, dtype=np.float32)
        for c in range(arr.shape[0]):
            if arr[c].max() <= arr[c].min():  # constant channel: skimage's histogram is undefined; keep it
                out[c] = arr[c]
                continue
            out[c] = equalize_adapthist(arr[c], kernel_size=self.kernel_size, clip_limit=self.clip_limit,
                                        nbins=self.nbins)
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


class CLAHEd(MapTransform):
    """Dictionary :class:`CLAHE`.

    Args:
        keys: image keys.
        clip_limit / kernel_size / nbins / in_max: see :class:`CLAHE`.
        allow_missing_keys: don't raise an exception if a key is missing.
    """

    backend = CLAHE.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        clip_limit: float = 0.01,
        kernel_size: int | Sequence[int] | None = None,
        nbins: int = 256,
        in_max: float = 255.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.clahe = CLAHE(clip_limit, kernel_size, nbins, in_max)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clahe(d[key])
        return d
