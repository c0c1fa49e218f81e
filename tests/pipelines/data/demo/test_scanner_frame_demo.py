"""Tests of the scanner-frame demo: boxes around the drawn lesions, dark frames, the GUI apart from the image, and
the detection datalist reading it."""

from __future__ import annotations

import csv
import math
import os

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label as label_components

from pipelines.data import (
    ensure_demo_dataset,
    frame_detection_datalist,
    make_scanner_frame_demo,
)
from pipelines.data.demo.common import seeded_rng
from pipelines.data.demo.scanner_frames import SCANNER_FRAME_CLASSES, scanner_frame
from transforms.busi import MasksToBoxes

NUM_FRAMES = 15  # patients P000..P004: benign, malignant, normal, benign, malignant
DARK = [6, 13]  # floor((i + 1) * 0.15) > floor(i * 0.15) for i < 15: a normal and a malignant frame


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_scanner_frame_demo(str(tmp_path_factory.mktemp("frames")), num_frames=NUM_FRAMES, seed=0)


def _rows(root):
    with open(os.path.join(root, "boxes.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _pixels(path):
    with Image.open(path) as img:
        return img.mode, np.asarray(img.convert("L")).astype(float)


def test_box_csv_matches_the_drawn_lesion(demo):
    rows = _rows(demo)
    assert list(rows[0]) == ["image", "x1", "y1", "x2", "y2", "label", "patient_id"]
    names = sorted(os.listdir(demo))
    assert names == [f"P{p:03d}_frame{k:02d}.png" for p in range(5) for k in range(3)] + ["boxes.csv"]
    for i in range(NUM_FRAMES):
        patient = i // 3
        name = f"P{patient:03d}_frame{i % 3:02d}.png"
        cls = SCANNER_FRAME_CLASSES[patient % 3]
        # the same generator call gives the written frame and its lesion mask
        rgb, fan, satellite = patient % 2 == 0, (patient // 2) % 2 == 1, cls != "normal" and i % 4 == 3
        frame, mask = scanner_frame(seeded_rng(0, 9, i), 240, 320, cls, rgb, fan, dark=i in DARK, satellite=satellite)
        with Image.open(os.path.join(demo, name)) as img:
            assert img.mode == ("RGB" if patient % 2 == 0 else "L")
            np.testing.assert_array_equal(np.asarray(img), frame)
        boxes = [[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in rows if r["image"] == name and r["x1"]]
        expected = [[c0, r0, c1, r1] for r0, c0, r1, c1 in MasksToBoxes()(mask).tolist()]
        assert boxes == expected
        assert {r["patient_id"] for r in rows if r["image"] == name} == {f"P{patient:03d}"}
        assert (len(boxes) == 0) == (cls == "normal")
        assert len(boxes) == (0 if cls == "normal" else 2 if i in (3, 11) else 1)  # satellites: i % 4 == 3
        for x1, y1, x2, y2 in boxes:  # the box is tight around its lesion
            inside = mask[int(y1) : int(y2), int(x1) : int(x2)]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        if boxes and i not in DARK:  # lesions are hypoechoic: darker inside their box than the 6 pixels around it
            gray = _pixels(os.path.join(demo, name))[1]
            x1, y1, x2, y2 = (int(v) for v in boxes[0])
            ring = gray[y1 - 6 : y2 + 6, x1 - 6 : x2 + 6].copy()
            ring[6:-6, 6:-6] = np.nan
            assert gray[y1:y2, x1:x2][mask[y1:y2, x1:x2]].mean() < 0.5 * np.nanmean(ring)


def test_dark_frames_and_image_area(demo):
    dark_means, bright_means = [], []
    for i in range(NUM_FRAMES):
        name = f"P{i // 3:03d}_frame{i % 3:02d}.png"
        _, gray = _pixels(os.path.join(demo, name))
        area = gray[40:200, 90:230]  # inside the image area of every frame
        (dark_means if i in DARK else bright_means).append(area.mean())
        assert gray.max() >= 200  # the burnt-in GUI stays bright
        if i in DARK:
            continue
        # the image area is one 8-connected component of non-zero pixels, apart from the GUI near the border
        components = label_components(gray > 0, connectivity=2)
        biggest = np.bincount(components.ravel())[1:].argmax() + 1
        rows, cols = np.nonzero(components == biggest)
        assert 0.7 * 240 <= rows.max() + 1 - rows.min() <= 0.8 * 240  # 180 rows
        assert rows.min() > 15 and rows.max() < 230 and cols.min() > 25 and cols.max() < 280
        assert (components == biggest).sum() > 0.6 * 180 * 180
        assert (gray[:15] > 0).any() and (gray[:, :25] > 0).any() and (gray[:, 280:] > 0).any()  # GUI at the border
        assert ((components > 0) & (components != biggest)).sum() > 100
    assert max(dark_means) < 8 and min(bright_means) > 40  # dark: almost black (6, 13) or dim (19, ...)


def test_datalist_reads_the_demo(demo):
    items, names = frame_detection_datalist(demo, return_label_names=True)
    assert names == ("lesion",)
    assert [it["case_id"] for it in items] == [f"P{i // 3:03d}_frame{i % 3:02d}" for i in range(NUM_FRAMES)]
    assert [it["patient_id"] for it in items] == [f"P{i // 3:03d}" for i in range(NUM_FRAMES)]
    assert [it["class_name"] for it in items] == ["lesion"] * 6 + ["negative"] * 3 + ["lesion"] * 6
    assert all(it["size"] == [240, 320] for it in items)
    rows = _rows(demo)
    for it in items:  # CSV x1,y1,x2,y2 -> [y1, x1, y2, x2]
        csv_boxes = [[float(r[k]) for k in ("y1", "x1", "y2", "x2")] for r in rows
                     if r["image"] == os.path.basename(it["image"]) and r["x1"]]
        assert it["box"] == csv_boxes and it["label"] == [0] * len(csv_boxes)


def test_frames_do_not_depend_on_count_and_dark_count(demo, tmp_path):
    small = make_scanner_frame_demo(str(tmp_path / "small"), num_frames=4, seed=0)
    for name in sorted(os.listdir(small)):
        if name.endswith(".png"):
            assert _pixels(os.path.join(small, name))[1].tolist() == _pixels(os.path.join(demo, name))[1].tolist()
    dark = [i for i in range(40) if math.floor((i + 1) * 0.15) > math.floor(i * 0.15)]
    assert dark == [6, 13, 19, 26, 33, 39]  # floor(40 * 0.15) = 6 dark frames, evenly spread
    with pytest.raises(ValueError, match="height must be an integer >= 120"):
        make_scanner_frame_demo(str(tmp_path / "bad"), height=100)
    with pytest.raises(ValueError, match="dark_fraction"):
        make_scanner_frame_demo(str(tmp_path / "bad"), dark_fraction=1.5)


def test_ensure_demo_dataset_busi_frames(tmp_path):
    root = ensure_demo_dataset("busi_frames", root=str(tmp_path / "cache"), num_frames=3, height=120, width=160)
    assert root == str(tmp_path / "cache")
    items = frame_detection_datalist(root)
    assert [it["size"] for it in items] == [[120, 160]] * 3 and all(it["box"] for it in items)
    assert ensure_demo_dataset("busi_frames", root=root, num_frames=3, height=120, width=160) == root
