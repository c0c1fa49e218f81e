"""Chest X-ray lung-mask datalist: the Montgomery County set as shipped, or a plain ``images/`` + ``masks/`` folder.

Montgomery County chest X-ray set (Jaeger et al., Quantitative Imaging in Medicine and Surgery 4(6):475-477, 2014):
``<root>/CXR_png/<id>.png`` with the manual lung masks ``<root>/ManualMask/leftMask/<id>.png`` and
``<root>/ManualMask/rightMask/<id>.png``, one file per lung (``leftMask`` is the patient's left lung, i.e. the image's
right side of a frontal radiograph). The images are 8-bit grayscale PNGs of 4020 x 4892 or 4892 x 4020 pixels, the
masks 8-bit 0/255 PNGs of the same size. The download's top folder ``MontgomerySet/`` may be given as well as
the folder inside it.

Plain layout (any other lung-mask set, e.g. a converted JSRT or Shenzhen set): ``<root>/images/<name>.png`` with
``<root>/masks/<name>.png``, one binary mask (0/1 or 0/255) of both lungs per image.

Items: ``{"image": path, "label": [mask paths], "case_id": <id>}``; ``label`` lists the two lung masks (Montgomery,
left then right) or the one mask (plain layout), merged by a logical or when they are loaded
(:func:`transforms.recipes.cxr_lung_train_transforms`).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..errors import DatasetError
from .common import check_root, listdir, sorted_by_case

__all__ = ["MONTGOMERY_LAYOUT", "montgomery_datalist"]

MONTGOMERY_LAYOUT = (
    "<root>/CXR_png/<id>.png with <root>/ManualMask/leftMask/<id>.png and <root>/ManualMask/rightMask/<id>.png "
    "(Montgomery County set), or <root>/images/<name>.png with <root>/masks/<name>.png"
)


def _png_stems(folder: str) -> dict[str, str]:
    """``{stem: path}`` of the PNG files directly in ``folder`` (hidden files left out)."""
    return {
        name[:-4]: os.path.join(folder, name)
        for name in listdir(folder)
        if name.lower().endswith(".png") and os.path.isfile(os.path.join(folder, name))
    }


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) from the image header (no decoding); DatasetError when it is not a readable image."""
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as e:  # PIL raises several types for damaged or foreign files
        raise DatasetError(f"{path}: unreadable image file ({type(e).__name__}: {e}).") from e


def _decode(path: str) -> np.ndarray:
    """The fully decoded pixels of an image (catches truncated files); DatasetError naming the file otherwise."""
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img)
    except Exception as e:
        raise DatasetError(f"{path}: unreadable image file ({type(e).__name__}: {e}).") from e


def _check_binary(path: str, pixels: np.ndarray) -> None:
    """DatasetError unless the mask holds only 0/1 or only 0/255 (any colour channel, alpha ignored)."""
    if pixels.ndim == 3:
        if pixels.shape[-1] in (2, 4):
            pixels = pixels[..., :-1]
        pixels = pixels.max(axis=-1)
    values = np.unique(pixels)
    if pixels.dtype == bool or set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}:
        return
    shown = ", ".join(f"{v:g}" for v in values[:10].tolist()) + (", ..." if len(values) > 10 else "")
    raise DatasetError(f"{path}: mask values [{shown}] are not binary; expected 0/1 or 0/255.")


def _pairs_montgomery(root: str) -> list[tuple[str, str, list[str]]]:
    images = _png_stems(os.path.join(root, "CXR_png"))
    sides = {}
    for side in ("leftMask", "rightMask"):
        folder = os.path.join(root, "ManualMask", side)
        if not os.path.isdir(folder):
            raise DatasetError(f"mask folder {folder} does not exist; expected {MONTGOMERY_LAYOUT}.")
        sides[side] = _png_stems(folder)
    left, right = sides["leftMask"], sides["rightMask"]
    for stem in sorted((set(left) | set(right)) - set(images)):
        mask = left.get(stem) or right[stem]
        raise DatasetError(f"mask {mask} has no image: expected {os.path.join(root, 'CXR_png', stem + '.png')}.")
    pairs = []
    for stem, image in images.items():
        missing = [
            os.path.join(root, "ManualMask", side, stem + ".png") for side, found in sides.items() if stem not in found
        ]
        if missing:
            raise DatasetError(f"{image} has no lung mask {' and no '.join(missing)} (both lungs are required).")
        pairs.append((stem, image, [left[stem], right[stem]]))
    return pairs


def _pairs_plain(root: str) -> list[tuple[str, str, list[str]]]:
    images = _png_stems(os.path.join(root, "images"))
    mask_dir = os.path.join(root, "masks")
    if not os.path.isdir(mask_dir):
        raise DatasetError(f"mask folder {mask_dir} does not exist; expected {MONTGOMERY_LAYOUT}.")
    masks = _png_stems(mask_dir)
    for stem in sorted(set(masks) - set(images)):
        raise DatasetError(
            f"mask {masks[stem]} has no image: expected {os.path.join(root, 'images', stem + '.png')}."
        )
    pairs = []
    for stem, image in images.items():
        if stem not in masks:
            raise DatasetError(f"{image} has no mask: expected {os.path.join(mask_dir, stem + '.png')}.")
        pairs.append((stem, image, [masks[stem]]))
    return pairs


def montgomery_datalist(root: str, check: bool = True) -> list[dict]:
    """Scan and validate a chest X-ray lung-mask dataset (Montgomery County layout or ``images/`` + ``masks/``).

    Every image and mask header is read (unreadable files, mask sizes); with ``check`` every file is also decoded
    (truncated files) and every mask must be binary (only 0/1 or only 0/255). The layout is chosen by the folders
    present: ``CXR_png/`` (Montgomery; also inside ``<root>/MontgomerySet/``) before ``images/``.

    Args:
        root: the dataset folder.
        check: decode every file and check the mask values (a full pass over the data; about a minute for the 138
            Montgomery cases); False reads headers only.

    Returns:
        Items ``{"image": path, "label": [mask paths], "case_id": <file stem>}`` sorted by case id (natural order),
        absolute paths; ``label`` is ``[leftMask, rightMask]`` (Montgomery) or ``[mask]`` (plain layout).

    Raises:
        DatasetError: a missing root, image or mask folder; an image without its mask (or with only one lung
            mask); a mask without an image; an unreadable file; a mask of another size than its image; mask values
            other than 0/1 or 0/255 (``check``); no image at all.
    """
    root = check_root(root, "chest X-ray lung-mask", MONTGOMERY_LAYOUT)
    nested = os.path.join(root, "MontgomerySet")
    if not os.path.isdir(os.path.join(root, "CXR_png")) and os.path.isdir(os.path.join(nested, "CXR_png")):
        root = nested
    if os.path.isdir(os.path.join(root, "CXR_png")):
        pairs, image_dir = _pairs_montgomery(root), os.path.join(root, "CXR_png")
    elif os.path.isdir(os.path.join(root, "images")):
        pairs, image_dir = _pairs_plain(root), os.path.join(root, "images")
    else:
        raise DatasetError(f"{root} has neither a CXR_png/ nor an images/ folder; expected {MONTGOMERY_LAYOUT}.")
    if not pairs:
        raise DatasetError(f"no PNG images found in {image_dir}; expected {MONTGOMERY_LAYOUT}.")
    items = []
    for stem, image, masks in pairs:
        size = _header_size(image)
        if check:
            _decode(image)
        for mask in masks:
            mask_size = _header_size(mask)
            if mask_size != size:
                raise DatasetError(
                    f"size mismatch: mask {mask} is {mask_size[0]}x{mask_size[1]} but image {image} is "
                    f"{size[0]}x{size[1]} (width x height)."
                )
            if check:
                _check_binary(mask, _decode(mask))
        items.append({"image": image, "label": list(masks), "case_id": stem})
    return sorted_by_case(items)
