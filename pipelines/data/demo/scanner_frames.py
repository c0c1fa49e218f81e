"""Synthetic breast-ultrasound scanner frames with a burnt-in GUI, for lesion detection.

Written in the layout :func:`~pipelines.data.datalists.detection.frame_detection_datalist` reads: PNG frames
``<root>/P<ppp>_frame<kk>.png`` (several frames per patient ``P<ppp>``) and ``<root>/boxes.csv`` with the columns
``image,x1,y1,x2,y2,label,patient_id`` (``x`` = column, pixel corners, exclusive maxima; one row per box, label
``lesion``; a negative frame has one row with empty ``x1..y2``).

A frame is what a scanner's video output or screenshot looks like: a black background; the ultrasound image (the
BUSI demo image of :mod:`.busi`, a learnable lesion) placed off-centre in a rectangle (linear probe) or a fan
(convex probe), every pixel of it non-zero (but on dark frames), so that a threshold crop (non-zero pixels) recovers it; around it,
separated by black gaps, the GUI: text-like glyph rows near the top, left and bottom borders, a depth scale with
tick marks right of the image, a colour bar at the right border (a gray ramp on grayscale frames) and a logo box in
the bottom-right corner. Patients alternate benign, malignant and normal (negatives); frames of even-numbered
patients are RGB, the others grayscale. Some frames are dark, with or without a lesion: the gain turned down, the
image scaled by 0.2-0.8 % (almost black: most of its pixels are 0, so a threshold crop finds little) or by 3-6 %
(dim, the lesion faintly visible); the GUI stays bright. The boxes are those of the 8-connected components of the
lesion mask as drawn in the frame (:class:`transforms.busi.MasksToBoxes`).
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
from PIL import Image

from .busi import _busi_image
from .common import check_count, seeded_rng

__all__ = ["SCANNER_FRAME_CLASSES", "make_scanner_frame_demo", "scanner_frame"]

#: Class of patient ``p``: ``SCANNER_FRAME_CLASSES[p % 3]`` (normal patients are negatives).
SCANNER_FRAME_CLASSES = ("benign", "malignant", "normal")
_STREAM = 9  # the random stream of this generator (see common.seeded_rng)
_COLUMNS = ("image", "x1", "y1", "x2", "y2", "label", "patient_id")
_MIN_HEIGHT, _MIN_WIDTH = 120, 160


def _glyph(rng: np.random.Generator) -> np.ndarray:
    """A random 5 x 3 character-like bitmap (never empty)."""
    glyph = rng.random((5, 3)) < 0.55
    glyph[rng.integers(5), rng.integers(3)] = True
    return glyph


def _text(canvas: np.ndarray, rng: np.random.Generator, row: int, col: int, count: int, scale: int, colour) -> int:
    """Draw ``count`` glyphs (with word gaps) from ``(row, col)``; returns the column after the last one."""
    for _ in range(count):
        if rng.random() < 0.15:  # a space
            col += 3 * scale
            continue
        glyph = np.kron(_glyph(rng), np.ones((scale, scale), bool))
        h, w = glyph.shape
        if col + w > canvas.shape[1] or row + h > canvas.shape[0]:
            break
        canvas[row : row + h, col : col + w][glyph] = colour
        col += w + scale
    return col


def _probe_area(size: int, fan: bool) -> np.ndarray:
    """The image area ``(size, size)``: a square (linear probe) or a fan of +-40 degrees whose apex lies above the
    top (convex probe)."""
    if not fan:
        return np.ones((size, size), bool)
    rows, cols = np.mgrid[0:size, 0:size].astype(float)
    dy, dx = rows + 0.35 * size, cols - (size - 1) / 2.0
    rho, theta = np.hypot(dy, dx), np.arctan2(dx, dy)
    return (np.abs(theta) < math.radians(40.0)) & (rho >= 0.35 * size) & (rho < 1.34 * size)


def scanner_frame(
    rng: np.random.Generator, height: int, width: int, cls: str, rgb: bool, fan: bool, dark: bool, satellite: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One scanner frame and its lesion mask.

    Args:
        rng: the frame's random generator.
        height: frame height (>= 120).
        width: frame width (>= 160).
        cls: ``"benign"``, ``"malignant"`` or ``"normal"`` (no lesion).
        rgb: an RGB frame (colour GUI) or a grayscale one.
        fan: fan-shaped image area (else a rectangle).
        dark: the image scaled down to 0.2-0.8 % (almost black) or 3-6 % (dim) of its brightness.
        satellite: a second, small lesion (benign and malignant only).

    Returns:
        ``(frame, mask)``: uint8 ``(H, W, 3)`` or ``(H, W)``, and bool ``(H, W)`` (the lesion pixels in the frame).
    """
    scale = max(1, height // 200)
    line = 5 * scale + 2 * scale  # text line pitch
    text_bottom, bottom_text = 3 + line + 5 * scale, height - 4 - 5 * scale
    left_block = 4 + 4 * 4 * scale + 6  # the parameter text at the left border and a gap
    right_gui = 16 * scale + 26  # the depth scale, its numbers and the colour bar
    size = min(
        int(0.75 * height),
        int(0.6 * width),
        bottom_text - text_bottom - 12,
        width - right_gui - max(left_block, int(0.15 * width)),
    )
    image, mask, satellite_mask = _busi_image(rng, size, cls, satellite)
    if satellite_mask is not None:
        mask = mask | satellite_mask
    area = _probe_area(size, fan)
    if dark:  # gain turned down: almost black (most pixels 0) or dim (the lesion still faintly visible)
        gain = rng.uniform(0.002, 0.008) if rng.random() < 0.5 else rng.uniform(0.03, 0.06)
        pixels = np.floor(image * gain)
    else:
        pixels = np.maximum(image, 1).astype(float)  # every pixel of the image area is non-zero
    pixels = np.where(area, pixels, 0.0)

    canvas = np.zeros((height, width, 3))
    text_colour = np.array([235.0, 225.0, 90.0]) if rgb else np.full(3, 230.0)
    # top-left: two text lines (patient, institution); top-right: date / time
    _text(canvas, rng, 3, 4, 14, scale, text_colour)
    _text(canvas, rng, 3 + line, 4, 10, scale, text_colour)
    _text(canvas, rng, 3, width - 4 - 11 * 4 * scale, 10, scale, np.full(3, 230.0))
    # image area: off-centre, black gaps to every GUI element
    top_lo, top_hi = max(text_bottom + 6, int(0.1 * height)), bottom_text - 6 - size
    left_lo = max(left_block, int(0.15 * width))
    left_hi = max(left_lo, min(int(0.25 * width), width - size - right_gui))
    if size < 32 or top_lo > top_hi:
        raise ValueError(f"a {height}x{width} frame is too small for the scanner GUI.")
    top = int(rng.integers(top_lo, min(top_hi, top_lo + 12) + 1))
    left = int(rng.integers(left_lo, left_hi + 1))
    canvas[top : top + size, left : left + size] = pixels[..., None]
    # left border: acquisition parameters (short lines)
    for k in range(4):
        _text(canvas, rng, top + 4 + k * (line + 3 * scale), 4, 4, scale, text_colour)
    # depth scale right of the image: a line with ticks every size / 8 rows and numbers at every other tick
    scale_col = left + size + 5
    canvas[top : top + size, scale_col] = 200.0
    for k, tick in enumerate(np.linspace(top, top + size - 1, 9).round().astype(int)):
        canvas[tick, scale_col : scale_col + 4] = 200.0
        if k % 2 == 0 and tick + 5 * scale <= top + size:
            _text(canvas, rng, tick, scale_col + 6, 1, scale, np.full(3, 200.0))
    # colour bar at the right border (Doppler scale: red -> blue; gray ramp on grayscale frames)
    bar_top, bar_bottom = int(0.3 * height), int(0.7 * height)
    v = np.linspace(0.0, 1.0, bar_bottom - bar_top)[:, None]
    bar = np.concatenate([255.0 * (1 - v), 128.0 * (1 - np.abs(2 * v - 1)), 255.0 * v], axis=1)
    canvas[bar_top:bar_bottom, width - 8 * scale - 6 : width - 6] = bar[:, None, :]
    # bottom-left: more text (MI / TIS); bottom-right: the vendor's logo box
    _text(canvas, rng, bottom_text, 4, 12, scale, text_colour)
    logo_h, logo_w = 6 * scale + 6, 16 * scale + 8
    r0, c0 = height - 3 - logo_h, width - 3 - logo_w
    canvas[r0 : r0 + logo_h, c0 : c0 + logo_w] = [40.0, 90.0, 170.0] if rgb else 90.0
    canvas[r0 : r0 + logo_h, [c0, c0 + logo_w - 1]] = 250.0
    canvas[[r0, r0 + logo_h - 1], c0 : c0 + logo_w] = 250.0
    _text(canvas, rng, r0 + 3, c0 + 4, 3, scale, np.full(3, 250.0))

    frame_mask = np.zeros((height, width), bool)
    frame_mask[top : top + size, left : left + size] = mask & area
    if rgb:
        frame = canvas
    else:  # ITU-R 601 luminance, as the loaders read colour
        frame = canvas @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(frame), 0, 255).astype(np.uint8), frame_mask


def make_scanner_frame_demo(
    root: str,
    num_frames: int = 24,
    height: int = 240,
    width: int = 320,
    seed: int = 0,
    dark_fraction: float = 0.15,
    frames_per_patient: int = 3,
) -> str:
    """Write scanner-like frames ``<root>/P<ppp>_frame<kk>.png`` and ``<root>/boxes.csv`` (module docstring).

    Frame ``i`` belongs to patient ``i // frames_per_patient``, whose class is
    :data:`SCANNER_FRAME_CLASSES` ``[p % 3]``; every fourth frame with a lesion (``i % 4 == 3``) has a second, small
    one. Frame ``i`` is dark when ``floor((i + 1) * dark_fraction) > floor(i * dark_fraction)`` (so
    ``floor(num_frames * dark_fraction)`` dark frames, evenly spread). A frame depends on ``(seed, i)`` and the
    sizes only, not on ``num_frames``.

    Args:
        root: output folder.
        num_frames: number of frames.
        height: frame height in pixels, >= 120.
        width: frame width in pixels, >= 160.
        seed: non-negative random seed.
        dark_fraction: share of dark (mostly black) frames, in [0, 1].
        frames_per_patient: frames per patient.

    Returns:
        ``root`` as a string.

    Raises:
        ValueError: a bad count, size, seed or ``dark_fraction``.
    """
    from transforms.busi import MasksToBoxes

    num_frames = check_count(num_frames, "num_frames")
    height = check_count(height, "height", minimum=_MIN_HEIGHT)
    width = check_count(width, "width", minimum=_MIN_WIDTH)
    frames_per_patient = check_count(frames_per_patient, "frames_per_patient")
    if not 0.0 <= float(dark_fraction) <= 1.0:
        raise ValueError(f"dark_fraction must be in [0, 1], got {dark_fraction!r}.")
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    to_boxes = MasksToBoxes()
    rows = []
    for i in range(num_frames):
        rng = seeded_rng(seed, _STREAM, i)
        patient = i // frames_per_patient
        cls = SCANNER_FRAME_CLASSES[patient % 3]
        dark = math.floor((i + 1) * dark_fraction) > math.floor(i * dark_fraction)
        frame, mask = scanner_frame(
            rng, height, width, cls, rgb=patient % 2 == 0, fan=(patient // 2) % 2 == 1, dark=dark,
            satellite=cls != "normal" and i % 4 == 3,
        )
        patient_id = f"P{patient:03d}"
        name = f"{patient_id}_frame{i % frames_per_patient:02d}.png"
        Image.fromarray(frame, mode="RGB" if frame.ndim == 3 else "L").save(os.path.join(root, name))
        boxes = to_boxes(mask)  # [row_min, col_min, row_max, col_max]
        if len(boxes) == 0:
            rows.append([name, "", "", "", "", "", patient_id])
        for r0, c0, r1, c1 in boxes.tolist():
            rows.append([name, c0, r0, c1, r1, "lesion", patient_id])
    with open(os.path.join(root, "boxes.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_COLUMNS)
        writer.writerows(rows)
    return root
