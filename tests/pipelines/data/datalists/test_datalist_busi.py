"""Tests of the BUSI datalist scanner: classes, masks, box files and every validation error."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from datalist_helpers import copy_dataset, esc
from PIL import Image

from pipelines.data import (
    BUSI_CLASSES,
    BUSI_LESION_CLASSES,
    DatasetError,
    busi_class_names,
    busi_datalist,
    make_busi_demo,
)


@pytest.fixture(scope="module")
def busi_src(tmp_path_factory):
    return make_busi_demo(str(tmp_path_factory.mktemp("busi")), num_per_class=4, size=48, seed=0)


def test_busi_datalist(busi_src):
    items = busi_datalist(busi_src)
    assert busi_class_names() == BUSI_LESION_CLASSES == ("benign", "malignant")
    assert [it["case_id"] for it in items] == [f"{c} ({n})" for c in ("benign", "malignant") for n in range(1, 5)]
    assert {(it["class_name"], it["label"]) for it in items} == {("benign", 0), ("malignant", 1)}
    b4 = items[3]
    assert b4["image"] == os.path.join(busi_src, "benign", "benign (4).png")
    assert b4["masks"] == [os.path.join(busi_src, "benign", f"benign (4)_mask{s}.png") for s in ("", "_1")]
    assert set(b4) == {"image", "masks", "label", "class_name", "case_id"}
    items = busi_datalist(busi_src, include_normal=True)
    assert busi_class_names(True) == BUSI_CLASSES == ("normal", "benign", "malignant")
    assert len(items) == 12
    assert {(it["class_name"], it["label"]) for it in items} == {("normal", 0), ("benign", 1), ("malignant", 2)}


def test_busi_natural_order(busi_src, tmp_path):
    root = make_busi_demo(str(tmp_path / "busi"), num_per_class=11, size=32, seed=0, include_normal=False)
    ids = [it["case_id"] for it in busi_datalist(root)]
    assert ids[:11] == [f"benign ({n})" for n in range(1, 12)]


def test_busi_mask_size_mismatch(busi_src, tmp_path):
    root = copy_dataset(busi_src, tmp_path / "busi")
    mask = os.path.join(root, "malignant", "malignant (2)_mask.png")
    image = os.path.join(root, "malignant", "malignant (2).png")
    Image.new("L", (40, 48)).save(mask)
    with pytest.raises(DatasetError, match=f"size mismatch: mask {esc(mask)} is 40x48 but image {esc(image)} is 48x48"):
        busi_datalist(root)


def test_busi_unreadable_and_orphans(busi_src, tmp_path):
    root = copy_dataset(busi_src, tmp_path / "busi")
    image = os.path.join(root, "benign", "benign (1).png")
    with open(image, "rb") as f:
        data = f.read()
    with open(image, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated PNG
    with pytest.raises(DatasetError, match=f"{esc(image)}: unreadable image file"):
        busi_datalist(root)
    with open(image, "wb") as f:
        f.write(data)
    os.remove(os.path.join(root, "benign", "benign (2).png"))
    with pytest.raises(
        DatasetError, match=f"mask {esc(os.path.join(root, 'benign', 'benign (2)_mask.png'))} has no image"
    ):
        busi_datalist(root)
    os.remove(os.path.join(root, "benign", "benign (2)_mask.png"))
    os.remove(os.path.join(root, "benign", "benign (3)_mask.png"))
    with pytest.raises(DatasetError, match=f"{esc(os.path.join(root, 'benign', 'benign (3).png'))} has no mask"):
        busi_datalist(root)
    items = busi_datalist(root, require_mask=False)
    assert [it["masks"] for it in items if it["case_id"] == "benign (3)"] == [[]]


def test_busi_missing_folders(busi_src, tmp_path):
    root = copy_dataset(busi_src, tmp_path / "busi")
    shutil.rmtree(os.path.join(root, "normal"))
    assert len(busi_datalist(root)) == 8
    with pytest.raises(DatasetError, match=f"class folder {esc(os.path.join(root, 'normal'))} does not exist"):
        busi_datalist(root, include_normal=True)
    for name in os.listdir(os.path.join(root, "malignant")):
        os.remove(os.path.join(root, "malignant", name))
    with pytest.raises(DatasetError, match=f"no images found in class folder {esc(os.path.join(root, 'malignant'))}"):
        busi_datalist(root)
    with pytest.raises(DatasetError, match="BUSI root .* does not exist"):
        busi_datalist(str(tmp_path / "nope"))


def test_busi_box_file(busi_src, tmp_path):
    box_file = tmp_path / "boxes.csv"
    absolute = os.path.join(busi_src, "malignant", "malignant (1).png")
    box_file.write_text(
        "image_path,class,box\n"
        "benign/benign (1).png,benign,1:2:30:40;5:5:10:12\n"
        "benign/benign (1).png,benign,0:0:48:48\n"
        "# a comment\n"
        f"{absolute},malignant,3.5:4:20:22.5\n"
        "normal/normal (1).png,normal,1:1:5:5\n"
    )
    items = {it["case_id"]: it for it in busi_datalist(busi_src, box_file=str(box_file))}
    # the CSV's x1:y1:x2:y2 (x = column) is held in MONAI's standard mode [row_min, col_min, row_max, col_max]
    assert items["benign (1)"]["boxes"] == [[2, 1, 40, 30], [5, 5, 12, 10], [0, 0, 48, 48]]
    assert items["malignant (1)"]["boxes"] == [[4, 3.5, 22.5, 20]]
    assert items["benign (2)"]["boxes"] == []
    items = {it["case_id"]: it for it in busi_datalist(busi_src, include_normal=True, box_file=str(box_file))}
    assert items["normal (1)"]["boxes"] == [[1, 1, 5, 5]]


def test_busi_box_file_rows_are_y_and_columns_are_x(busi_src, tmp_path):
    """x1:y1:x2:y2 of the CSV fills rows y1:y2 and columns x1:x2 of the mask (exclusive ends, pixel corners)."""
    from transforms.busi import BoxesToMaskd, MasksToBoxes

    box_file = tmp_path / "boxes.csv"
    box_file.write_text("benign/benign (1).png,benign,3:10:7:12;40:0:48:1\n")
    item = {it["case_id"]: it for it in busi_datalist(busi_src, box_file=str(box_file))}["benign (1)"]
    out = BoxesToMaskd()({"mask": np.zeros((1, 48, 48), np.float32), "boxes": item["boxes"]})
    expected = np.zeros((1, 48, 48), np.float32)
    expected[0, 10:12, 3:7] = 1
    expected[0, 0:1, 40:48] = 1
    np.testing.assert_array_equal(out["mask"], expected)
    assert out["has_mask"] == 1
    np.testing.assert_array_equal(MasksToBoxes()(out["mask"]), [[0, 40, 1, 48], [10, 3, 12, 7]])


@pytest.mark.parametrize(
    "row, message",
    [
        ("benign/benign (9).png,benign,1:2:3:4", r"image .*benign \(9\)\.png does not exist"),
        ("benign/benign (1).png,malignant,1:2:3:4", r"class 'malignant' disagrees with the folder"),
        ("benign/benign (1).png,benign,1:2:3", r"expected x1:y1:x2:y2"),
        ("benign/benign (1).png,benign,10:2:3:4", r"box \[10, 2, 3, 4\] is empty or outside"),
        ("benign/benign (1).png,benign,1:2:49:4", r"box \[1, 2, 49, 4\] is empty or outside .* of size 48x48"),
    ],
)
def test_busi_bad_box_file(busi_src, tmp_path, row, message):
    box_file = tmp_path / "boxes.csv"
    box_file.write_text("benign/benign (2).png,benign,1:1:4:4\n" + row + "\n")
    with pytest.raises(DatasetError, match=f"box file {esc(box_file)}, line 2: {message}"):
        busi_datalist(busi_src, box_file=str(box_file))
