"""BUSI (breast ultrasound) transforms for LA-Net: loading, weak and partial labels, augmentation.

Items come from :func:`pipelines.data.datalists.busi_datalist`: ``{"image": path, "masks": [paths], "label",
"class_name", "case_id", "boxes"?}``. :class:`LoadBUSId` turns them into ``image`` ``(1, H, W)`` float32 in
[0, 255], ``mask`` ``(1, H, W)`` float32 in {0, 1} (all the ``masks`` merged with a logical or) and
``has_mask`` (1 when at least one mask file was given, else 0 and an all-zero mask).

Augmentation as in Fan et al., Medical Image Analysis 90 (2023) 102960 (LA-Net): random rotation by
90/180/270 degrees, random resized crop (scale 0.75-1, ratio 0.75-1.33), horizontal and vertical flips,
intensity jitter (image only), normalisation to [-1, 1]; the mask gets the same geometric transforms. Test:
resize the short side and centre crop. See :func:`busi_train_transforms` and :func:`busi_eval_transforms`.

Boxes (one convention everywhere in memory): MONAI's 2D standard mode ``xyxy`` of :mod:`monai.data.box_utils`,
``[min_0, min_1, max_0, max_1]`` in array index order of a ``(H, W)`` image: axis 0 is the row (image height,
top to bottom), axis 1 the column (image width, left to right); the minima are the first pixel inside the box,
the maxima are exclusive (one past the last pixel), i.e. pixel corners, so the box of the single pixel
``mask[r, c]`` is ``[r, c, r + 1, c + 1]`` and ``mask[r0:r1, c0:c1]`` is the box ``[r0, c0, r1, c1]``.
:class:`MasksToBoxes` and :class:`BoxesToMask` convert with MONAI's ``convert_mask_to_box`` /
``convert_box_to_mask`` (:mod:`monai.apps.detection.transforms.box_ops`). The BUSI box CSV keeps its
``x1:y1:x2:y2`` columns (``x`` = column, ``y`` = row, pixel corners);
:func:`pipelines.data.datalists.busi_datalist` swaps them into this order when it reads the file.

:class:`ResizeShortSide` records itself on MetaTensors like MONAI's ``Resize`` (it is one), so
``Compose.inverse`` / ``Invertd`` map a prediction on the network grid back to the image's own grid.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.transforms.box_ops import (
    convert_box_to_mask,
    convert_mask_to_box,
)
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor, get_track_meta
from monai.data.box_utils import clip_boxes_to_image, convert_box_to_standard_mode
from monai.transforms import (
    InvertibleTransform,
    MapTransform,
    RandomizableTransform,
    Resize,
    Transform,
)
from monai.transforms.spatial.functional import resize
from monai.utils import convert_to_dst_type, convert_to_tensor, get_equivalent_dtype
from PIL import Image
from scipy import ndimage
from skimage.measure import label as label_components
from skimage.morphology import disk

__all__ = [
    "BoxesToMask",
    "BoxesToMaskd",
    "DilateMask",
    "DilateMaskd",
    "LoadBUSId",
    "MasksToBoxes",
    "MasksToBoxesd",
    "PartialAnnotationd",
    "RandResizedCrop",
    "RandResizedCropd",
    "ResizeShortSide",
    "ResizeShortSided",
    "load_busi_image",
    "load_busi_masks",
    "partial_annotation_ids",
]


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _read_png(path: str) -> tuple[np.ndarray, str]:
    """Pixels (H, W) or (H, W, C) of an image file and its PIL mode."""
    with Image.open(os.fspath(path)) as img:
        img.load()
        mode = img.mode
        if mode == "P":  # palette: expand, keeping an alpha channel if the palette has one
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            mode = img.mode
        return np.asarray(img), mode


def load_busi_image(path: str) -> np.ndarray:
    """Load an image file as one float32 channel ``(1, H, W)`` with values in [0, 255].

    Grayscale (``L``, ``I;16``, ``F``) is kept as is; an alpha channel (``LA``, ``RGBA``) is dropped; colour
    (``RGB``) becomes the ITU-R 601 luminance ``0.299 R + 0.587 G + 0.114 B`` (the BUSI RGB files have three
    identical channels, so this equals any channel). 16-bit images are scaled to [0, 255].

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unsupported channel layout (the message names the file).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path} does not exist.")
    pixels, mode = _read_png(path)
    pixels = pixels.astype(np.float32)
    if mode.startswith("I;16") or mode == "I":
        pixels = pixels * (255.0 / 65535.0)
    if pixels.ndim == 3:
        channels = pixels.shape[-1]
        if channels in (2, 4):  # LA, RGBA: drop alpha
            pixels = pixels[..., :-1]
            channels -= 1
        if channels == 3:
            pixels = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        elif channels == 1:
            pixels = pixels[..., 0]
        else:
            raise ValueError(f"image {path}: unsupported channel layout {mode!r} with shape {pixels.shape}.")
    return pixels[None]


def _load_mask(path: str) -> np.ndarray:
    """One mask file as bool ``(H, W)``: any colour channel on (alpha dropped); 0/255 and 0/1 both work."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask {path} does not exist.")
    pixels, mode = _read_png(path)
    if pixels.ndim == 3:
        if pixels.shape[-1] in (2, 4):
            pixels = pixels[..., :-1]
        pixels = pixels.max(axis=-1)
    if pixels.dtype == bool:
        return pixels
    # 8-bit masks are stored as 0/255 (sometimes with anti-aliased edges): threshold at half range;
    # masks stored as 0/1 have a maximum of 1 and are taken as they are.
    threshold = 0 if pixels.max() <= 1 else (127 if pixels.dtype == np.uint8 else pixels.max() / 2)
    return pixels > threshold


def load_busi_masks(paths: Sequence[str], size: Sequence[int], image_path: str = "?") -> tuple[np.ndarray, int]:
    """Merge mask files with a logical or.

    Args:
        paths: mask files (may be empty).
        size: ``(H, W)`` of the image.
        image_path: the image file, for error messages.

    Returns:
        ``(mask, has_mask)``: float32 ``(1, H, W)`` in {0, 1} and 1 if ``paths`` is not empty, else an all-zero
        mask and 0.

    Raises:
        ValueError: a mask's size differs from the image's (naming both files and sizes).
    """
    height, width = int(size[0]), int(size[1])
    merged = np.zeros((height, width), dtype=bool)
    for path in paths:
        mask = _load_mask(path)
        if mask.shape != (height, width):
            raise ValueError(
                f"size mismatch: mask {path} is {mask.shape[1]}x{mask.shape[0]} but image {image_path} is "
                f"{width}x{height} (width x height)."
            )
        merged |= mask
    return merged[None].astype(np.float32), int(len(paths) > 0)


class LoadBUSId(MapTransform):
    """Load a BUSI item: ``image`` path -> ``(1, H, W)`` float32 MetaTensor in [0, 255]; ``masks`` paths ->
    merged ``mask`` ``(1, H, W)`` float32 in {0, 1} and ``has_mask`` (0/1).

    See :func:`load_busi_image` (colour and alpha handling) and :func:`load_busi_masks` (merging). An item
    without ``masks`` (or with an empty list) gets an all-zero mask and ``has_mask = 0``; an annotated
    all-zero mask (a normal image) has ``has_mask = 1``. The ``masks`` list is kept (delete it before
    collation: its length varies).

    Args:
        keys: the image key (a single key). Defaults to ``"image"``.
        masks_key: key of the list of mask paths.
        mask_key: output key of the merged mask.
        has_mask_key: output key of the annotation flag.
        allow_missing_keys: don't raise when the image key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        masks_key: str = "masks",
        mask_key: str = "mask",
        has_mask_key: str = "has_mask",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.masks_key, self.mask_key, self.has_mask_key = masks_key, mask_key, has_mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = os.fspath(d[key])
            image = load_busi_image(path)
            paths = d.get(self.masks_key) or []
            if isinstance(paths, str):
                paths = [paths]
            mask, has_mask = load_busi_masks([os.fspath(p) for p in paths], image.shape[1:], path)
            meta = {"filename_or_obj": path, "spatial_shape": np.asarray(image.shape[1:])}
            d[key] = MetaTensor(torch.from_numpy(image), meta=meta)
            d[self.mask_key] = MetaTensor(torch.from_numpy(mask), meta=dict(meta))
            d[self.has_mask_key] = has_mask
        return d


# --------------------------------------------------------------------------------------------
# boxes <-> masks, dilation, partial annotation
# --------------------------------------------------------------------------------------------
def _as_standard_boxes(boxes: Iterable[Sequence[float]] | NdarrayOrTensor) -> np.ndarray:
    """``(N, 4)`` float64 boxes in MONAI's 2D standard mode (see the module docstring).

    Raises:
        ValueError: a box with fewer or more than four numbers.
    """
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    rows = [np.asarray(box, dtype=np.float64).ravel() for box in boxes]
    for box in rows:
        if box.size != 4:
            raise ValueError(f"a box is [row_min, col_min, row_max, col_max], got {box.tolist()!r}.")
    array = np.stack(rows) if rows else np.zeros((0, 4))
    return np.asarray(convert_box_to_standard_mode(array, mode="xyxy"), dtype=np.float64)


class BoxesToMask(Transform):
    """Filled rectangles from boxes in MONAI's 2D standard mode ``[row_min, col_min, row_max, col_max]``
    (exclusive maxima, see the module docstring), via :func:`monai.apps.detection.transforms.box_ops.convert_box_to_mask`.

    Fractional corners are widened to whole pixels (floor of the minima, ceil of the maxima); boxes are clipped
    to the image with :func:`monai.data.box_utils.clip_boxes_to_image` (boxes left empty are dropped).
    """

    def __call__(self, boxes: Iterable[Sequence[float]] | NdarrayOrTensor, spatial_shape: Sequence[int]) -> np.ndarray:
        """
        Args:
            boxes: ``(N, 4)`` (may be empty).
            spatial_shape: ``(H, W)`` of the mask.

        Returns:
            float32 ``(1, H, W)`` in {0, 1}.

        Raises:
            ValueError: a box with fewer or more than four numbers.
        """
        size = (int(spatial_shape[0]), int(spatial_shape[1]))
        boxes = _as_standard_boxes(boxes)
        boxes = np.concatenate([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])], axis=1)
        boxes, _ = clip_boxes_to_image(boxes, size, remove_empty=True)
        masks = convert_box_to_mask(
            np.asarray(boxes, dtype=np.int64), np.ones(len(boxes), dtype=np.int64), size, bg_label=0
        )
        return (np.asarray(masks) > 0).any(axis=0, keepdims=True).astype(np.float32)


class BoxesToMaskd(MapTransform):
    """Weak labels: the rectangles of ``boxes`` (standard mode, see :class:`BoxesToMask`) replace the mask.

    An item with boxes gets ``has_mask = 1``; one without (key missing or empty list) gets an all-zero mask and
    ``has_mask = 0``, so that only the boxes supervise the localisation.

    Args:
        keys: mask key(s) to replace. Defaults to ``"mask"``.
        boxes_key: key of the boxes.
        has_mask_key: key of the annotation flag.
        allow_missing_keys: don't raise for missing mask keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "mask",
        boxes_key: str = "boxes",
        has_mask_key: str = "has_mask",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.boxes_key, self.has_mask_key = boxes_key, has_mask_key
        self.converter = BoxesToMask()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        boxes = d.get(self.boxes_key)
        boxes = np.zeros((0, 4)) if boxes is None else _as_standard_boxes(boxes)
        for key in self.key_iterator(d):
            mask = d[key]
            new = self.converter(boxes, mask.shape[1:])
            d[key] = convert_to_dst_type(new, mask)[0]
        d[self.has_mask_key] = int(len(boxes) > 0)
        return d


class MasksToBoxes(Transform):
    """One box per connected component (8-connectivity) of a mask, in MONAI's 2D standard mode
    ``[row_min, col_min, row_max, col_max]`` with exclusive maxima (module docstring), via
    :func:`monai.apps.detection.transforms.box_ops.convert_mask_to_box`; :class:`BoxesToMask` of a rectangle's
    box gives the rectangle back. Components are ordered by label (raster order of their first pixel)."""

    def __call__(self, mask: NdarrayOrTensor) -> np.ndarray:
        """
        Args:
            mask: ``(1, H, W)`` or ``(H, W)``; nonzero is foreground.

        Returns:
            int64 ``(N, 4)`` (``N = 0`` for an empty mask).
        """
        array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if array.ndim == 3:
            array = array.any(axis=0)
        if array.ndim != 2:
            raise ValueError(f"expected a mask (1, H, W) or (H, W), got shape {array.shape}.")
        labels, count = label_components(array > 0, connectivity=2, return_num=True)
        if count == 0:
            return np.zeros((0, 4), dtype=np.int64)
        per_component = (labels[None] == np.arange(1, count + 1)[:, None, None]).astype(np.int16)
        boxes, _ = convert_mask_to_box(per_component, bg_label=0, box_dtype=np.int64)
        return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


class MasksToBoxesd(MapTransform):
    """Dictionary wrapper of :class:`MasksToBoxes`: ``boxes_key`` gets the boxes of ``keys`` (one mask key).

    Args:
        keys: the mask key. Defaults to ``"mask"``.
        boxes_key: output key.
        allow_missing_keys: don't raise when the mask is missing.
    """

    def __init__(self, keys: KeysCollection = "mask", boxes_key: str = "boxes", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.boxes_key = boxes_key
        self.converter = MasksToBoxes()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.boxes_key] = self.converter(d[key])
        return d


class DilateMask(Transform):
    """Binary dilation of every channel by ``radius`` pixels with a disk structuring element.

    The LA-Net configuration has a ``dilute_mask`` option the original code never applied; here it is.

    Args:
        radius: dilation radius d in pixels; 0 returns the mask unchanged.

    Raises:
        ValueError: negative ``radius``.
    """

    def __init__(self, radius: int = 0) -> None:
        if int(radius) != radius or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, got {radius!r}.")
        self.radius = int(radius)
        self.footprint = disk(self.radius).astype(bool) if self.radius > 0 else None

    def __call__(self, mask: NdarrayOrTensor) -> NdarrayOrTensor:
        """``mask`` ``(C, H, W)``, nonzero is foreground -> same shape, type and dtype, values 0/1."""
        if self.radius == 0:
            return mask
        array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        out = np.stack([ndimage.binary_dilation(c > 0, structure=self.footprint) for c in array])
        return convert_to_dst_type(out.astype(array.dtype), mask)[0]


class DilateMaskd(MapTransform):
    """Dictionary wrapper of :class:`DilateMask`.

    Args:
        keys: mask keys. Defaults to ``"mask"``.
        radius: see :class:`DilateMask`.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(self, keys: KeysCollection = "mask", radius: int = 0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dilater = DilateMask(radius)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.dilater(d[key])
        return d


def _unit_hash(seed: int, case_id: str) -> float:
    """A deterministic number in [0, 1) from a seed and a case id (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def partial_annotation_ids(datalist: Sequence[Mapping], fraction: float, seed: int = 0, id_key: str = "case_id"):
    """The case ids whose masks are kept: exactly ``round(fraction * N)`` of them, chosen by a seeded hash.

    Args:
        datalist: items with ``id_key``.
        fraction: fraction in [0, 1] of annotated items.
        seed: selection seed.
        id_key: key of the case id.

    Returns:
        a sorted list of case ids.

    Raises:
        ValueError: ``fraction`` outside [0, 1].
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}.")
    ids = sorted({str(item[id_key]) for item in datalist})
    keep = int(round(fraction * len(ids)))
    return sorted(sorted(ids, key=lambda c: _unit_hash(seed, c))[:keep])


class PartialAnnotationd(MapTransform):
    """Keep the masks of some cases only; the others get an all-zero mask and ``has_mask = 0`` (and are then
    trained with pseudo labels). Deterministic, so it may sit before a cache.

    A case is kept when its id is in ``keep_ids`` (see :func:`partial_annotation_ids` for an exact fraction),
    or, without ``keep_ids``, when a seeded hash of its id (:func:`hashlib.sha256`) falls below ``fraction``
    (each case independently, so the kept fraction is approximate).

    Args:
        keys: mask keys. Defaults to ``"mask"``.
        fraction: fraction of cases to keep when ``keep_ids`` is None.
        seed: hash seed.
        keep_ids: explicit case ids to keep (overrides ``fraction``).
        id_key: key of the case id.
        has_mask_key: key of the annotation flag.
        allow_missing_keys: don't raise for missing mask keys.

    Raises:
        ValueError: ``fraction`` outside [0, 1].
    """

    def __init__(
        self,
        keys: KeysCollection = "mask",
        fraction: float = 1.0,
        seed: int = 0,
        keep_ids: Iterable[str] | None = None,
        id_key: str = "case_id",
        has_mask_key: str = "has_mask",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction!r}.")
        self.fraction, self.seed = float(fraction), int(seed)
        self.keep_ids = None if keep_ids is None else {str(c) for c in keep_ids}
        self.id_key, self.has_mask_key = id_key, has_mask_key

    def is_kept(self, case_id: str) -> bool:
        """Whether ``case_id`` keeps its mask."""
        if self.keep_ids is not None:
            return str(case_id) in self.keep_ids
        return _unit_hash(self.seed, str(case_id)) < self.fraction

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.id_key not in d:
            raise KeyError(f"PartialAnnotationd needs the case id key {self.id_key!r}; item keys: {sorted(d)}.")
        if self.is_kept(d[self.id_key]):
            return d
        for key in self.key_iterator(d):
            d[key] = d[key] * 0
        d[self.has_mask_key] = 0
        return d


# --------------------------------------------------------------------------------------------
# geometric augmentation
# --------------------------------------------------------------------------------------------
class RandResizedCrop(RandomizableTransform):
    """Crop a random area fraction (``scale``) with a random aspect ratio (``ratio``, width / height, sampled
    log-uniformly) and resize it to ``spatial_size``, as ``RandomResizedCrop`` of the LA-Net code.

    Ten tries find a crop that fits; otherwise the central crop with the ratio clipped to ``ratio``. MONAI has
    no crop with both an area and an aspect-ratio range (``RandScaleCrop`` keeps the ratio).

    Args:
        spatial_size: output ``(H, W)`` (an int for a square).
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height).
        mode: interpolation of :class:`monai.transforms.Resize` (``"bilinear"``, ``"nearest"``, ``"area"``).
        anti_aliasing: smooth before downsampling.
        prob: probability of a random crop; otherwise the whole image is resized.

    Raises:
        ValueError: an empty or reversed range.
    """

    def __init__(
        self,
        spatial_size: Sequence[int] | int,
        scale: Sequence[float] = (0.75, 1.0),
        ratio: Sequence[float] = (0.75, 4.0 / 3.0),
        mode: str = "bilinear",
        anti_aliasing: bool = False,
        prob: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}.")
        self.spatial_size = (spatial_size, spatial_size) if isinstance(spatial_size, int) else tuple(spatial_size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.mode, self.anti_aliasing = mode, anti_aliasing
        self._box: tuple[int, int, int, int] | None = None  # top, left, height, width

    def randomize(self, spatial_shape: Sequence[int]) -> None:  # type: ignore[override]
        """Draw the crop ``(top, left, height, width)`` for an image of ``(H, W)``."""
        super().randomize(None)
        height, width = int(spatial_shape[0]), int(spatial_shape[1])
        if not self._do_transform:
            self._box = (0, 0, height, width)
            return
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(self.R.randint(0, height - h + 1))
                left = int(self.R.randint(0, width - w + 1))
                self._box = (top, left, h, w)
                return
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            h, w = height, width
        self._box = ((height - h) // 2, (width - w) // 2, h, w)

    def crop_resize(self, img: NdarrayOrTensor, mode: str | None = None, anti_aliasing: bool | None = None):
        """Apply the drawn crop to ``img`` ``(C, H, W)`` and resize; ``mode`` overrides the interpolation."""
        if self._box is None:
            raise RuntimeError("call randomize() before crop_resize().")
        top, left, h, w = self._box
        cropped = img[:, top : top + h, left : left + w]
        resize = Resize(
            self.spatial_size,
            mode=mode or self.mode,
            anti_aliasing=self.anti_aliasing if anti_aliasing is None else anti_aliasing,
        )
        return resize(cropped)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """``img`` ``(C, H, W)`` -> ``(C, *spatial_size)``."""
        if randomize:
            self.randomize(img.shape[1:])
        return self.crop_resize(img)


class RandResizedCropd(RandomizableTransform, MapTransform):
    """Dictionary wrapper of :class:`RandResizedCrop`: the same crop for every key (image and mask).

    Args:
        keys: keys to crop, all of the same spatial shape.
        spatial_size: see :class:`RandResizedCrop`.
        scale: see :class:`RandResizedCrop`.
        ratio: see :class:`RandResizedCrop`.
        mode: interpolation per key (``"bilinear"`` for the image, ``"nearest-exact"`` for the mask: pixel-centre
            aligned with bilinear, unlike ``"nearest"``).
        anti_aliasing: per key.
        prob: see :class:`RandResizedCrop`.
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | int,
        scale: Sequence[float] = (0.75, 1.0),
        ratio: Sequence[float] = (0.75, 4.0 / 3.0),
        mode: Sequence[str] | str = "bilinear",
        anti_aliasing: Sequence[bool] | bool = False,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.cropper = RandResizedCrop(spatial_size, scale, ratio, prob=prob)
        n = len(self.keys)
        self.mode = [mode] * n if isinstance(mode, str) else list(mode)
        self.anti_aliasing = [anti_aliasing] * n if isinstance(anti_aliasing, bool) else list(anti_aliasing)
        if len(self.mode) != n or len(self.anti_aliasing) != n:
            raise ValueError(f"need one mode and anti_aliasing per key {self.keys}, got {mode!r}, {anti_aliasing!r}.")

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.cropper.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == ():
            return d
        shape = d[first].shape[1:]
        self.cropper.randomize(shape)
        for key, mode, aa in self.key_iterator(d, self.mode, self.anti_aliasing):
            if d[key].shape[1:] != shape:
                raise ValueError(f"key {key!r} has spatial shape {tuple(d[key].shape[1:])}, {first!r} {tuple(shape)}.")
            d[key] = self.cropper.crop_resize(d[key], mode=mode, anti_aliasing=aa)
        return d


class ResizeShortSide(Resize):
    """Resize ``(C, H, W)`` so that the shorter side is ``size`` (aspect ratio kept, the longer side rounded).

    A MONAI :class:`~monai.transforms.Resize` whose output size follows from the input: on a MetaTensor the
    operation is recorded and :meth:`inverse` resizes back to the original size (with the recorded ``mode``, no
    anti-aliasing, as MONAI's ``Resize.inverse``).

    Args:
        size: target length of the shorter side.
        mode: interpolation of :class:`monai.transforms.Resize`.
        anti_aliasing: smooth before downsampling.
    """

    def __init__(self, size: int, mode: str = "bilinear", anti_aliasing: bool = False) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size!r}.")
        super().__init__(spatial_size=int(size), mode=mode, anti_aliasing=anti_aliasing)
        self.size = int(size)

    def short_side_shape(self, height: int, width: int) -> tuple[int, int]:
        """The output ``(H', W')`` for an ``(H, W)`` input."""
        scale = self.size / min(height, width)
        if height <= width:
            return self.size, max(self.size, int(round(width * scale)))
        return max(self.size, int(round(height * scale))), self.size

    def __call__(
        self, img: NdarrayOrTensor, mode: str | None = None, anti_aliasing: bool | None = None, lazy: bool | None = None
    ):
        new = self.short_side_shape(int(img.shape[1]), int(img.shape[2]))
        aa = self.anti_aliasing if anti_aliasing is None else anti_aliasing
        mode = mode or self.mode
        lazy_ = self.lazy if lazy is None else lazy
        img = convert_to_tensor(img, track_meta=get_track_meta())
        dtype = get_equivalent_dtype(self.dtype or img.dtype, torch.Tensor)
        return resize(img, new, mode, self.align_corners, dtype, 2, aa, self.anti_aliasing_sigma, lazy_,
                      self.get_transform_info())


class ResizeShortSided(MapTransform, InvertibleTransform):
    """Dictionary wrapper of :class:`ResizeShortSide` with a mode and anti-aliasing flag per key; invertible."""

    def __init__(
        self,
        keys: KeysCollection,
        size: int,
        mode: Sequence[str] | str = "bilinear",
        anti_aliasing: Sequence[bool] | bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.resizer = ResizeShortSide(size)
        n = len(self.keys)
        self.mode = [mode] * n if isinstance(mode, str) else list(mode)
        self.anti_aliasing = [anti_aliasing] * n if isinstance(anti_aliasing, bool) else list(anti_aliasing)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mode, aa in self.key_iterator(d, self.mode, self.anti_aliasing):
            d[key] = self.resizer(d[key], mode=mode, anti_aliasing=aa)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resizer.inverse(d[key])
        return d
