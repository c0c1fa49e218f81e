"""The chest X-ray shortcut demo: raw NIH layout, the marker rule per split, the cached prepared task folder."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from pipelines.data import ensure_demo_dataset, make_chestxray14_shortcut_demo
from pipelines.data.prepare.chestxray14 import plan_chestxray14_split, read_data_entry
from transforms.chestxray import lung_box_from_mask

SIZE = 64
HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return make_chestxray14_shortcut_demo(str(tmp_path_factory.mktemp("raw")), "ne", num_patients=40, size=SIZE)


def _marked(path: str) -> bool:
    """A burnt-in marker: a block of saturated pixels (nothing else in the images reaches 255)."""
    return int((np.asarray(Image.open(path)) == 255).sum()) >= round(0.09 * SIZE) ** 2


def test_raw_layout(raw):
    with open(os.path.join(raw, "Data_Entry_2017.csv")) as f:
        assert f.readline().rstrip("\n") == HEADER
    entries = read_data_entry(os.path.join(raw, "Data_Entry_2017.csv"))
    names = sorted(e["image"] for e in entries)
    assert sorted(os.listdir(os.path.join(raw, "images"))) == names
    assert sorted(os.listdir(os.path.join(raw, "lung_masks"))) == names
    assert {f for e in entries for f in e["findings"]} == {"No Finding", "Effusion"}
    mask = np.asarray(Image.open(os.path.join(raw, "lung_masks", names[0])))
    assert set(np.unique(mask)) == {0, 255} and mask.shape == (SIZE, SIZE)


def test_marker_follows_the_split(raw):
    plan = plan_chestxray14_split(read_data_entry(os.path.join(raw, "Data_Entry_2017.csv")), "ne", seed=0)
    assert {split for split, _ in plan.values()} == {"train", "val", "test"}
    for name, (split, finding) in plan.items():
        disease = finding == "Effusion"
        path = os.path.join(raw, "images", name)
        assert _marked(path) == (disease if split in ("train", "val") else not disease), (name, split, finding)
        if _marked(path):  # above the lung box, in a top corner
            rows, cols = np.nonzero(np.asarray(Image.open(path)) == 255)
            lungs = np.asarray(Image.open(os.path.join(raw, "lung_masks", name))) > 0
            assert rows.max() < lung_box_from_mask(lungs)[0]
            assert cols.max() < SIZE * 0.2 or cols.min() > SIZE * 0.8


def test_no_test_marker_and_bad_arguments(tmp_path):
    root = make_chestxray14_shortcut_demo(str(tmp_path / "none"), "ne", num_patients=40, size=SIZE, test_marker="none")
    plan = plan_chestxray14_split(read_data_entry(os.path.join(root, "Data_Entry_2017.csv")), "ne", seed=0)
    assert not any(_marked(os.path.join(root, "images", n)) for n, (s, _) in plan.items() if s == "test")
    with pytest.raises(ValueError, match="test_marker"):
        make_chestxray14_shortcut_demo(str(tmp_path / "bad"), "ne", test_marker="always")
    with pytest.raises(ValueError, match="task"):
        make_chestxray14_shortcut_demo(str(tmp_path / "bad"), "xyz")


def test_same_seed_same_bytes(raw, tmp_path):
    again = make_chestxray14_shortcut_demo(str(tmp_path / "again"), "ne", num_patients=40, size=SIZE)
    for name in sorted(os.listdir(os.path.join(raw, "images")))[:6]:
        with open(os.path.join(raw, "images", name), "rb") as a, open(os.path.join(again, "images", name), "rb") as b:
            assert a.read() == b.read()


def test_ensure_demo_dataset_gives_the_prepared_task(tmp_path):
    task_dir = ensure_demo_dataset("chestxray14_shortcut", root=str(tmp_path / "demo"), task="np", num_patients=24,
                                   size=SIZE)
    assert task_dir == os.path.join(str(tmp_path / "demo"), "prepared", "np")
    assert ensure_demo_dataset("chestxray14_shortcut", root=str(tmp_path / "demo"), task="np", num_patients=24,
                               size=SIZE) == task_dir  # cached
    with open(os.path.join(task_dir, "manifest.csv"), newline="") as f:
        manifest = list(csv.DictReader(f))
    with open(os.path.join(task_dir, "lung_boxes.csv"), newline="") as f:
        boxes = {row["image"]: row for row in csv.DictReader(f)}
    assert {row["finding"] for row in manifest} == {"No Finding", "Pneumothorax"}
    assert set(boxes) == {row["image"] for row in manifest}
    for row in manifest:
        assert os.path.isfile(os.path.join(task_dir, *row["image"].split("/")))
        box = boxes[row["image"]]
        name = os.path.basename(row["image"])
        lungs = np.asarray(Image.open(os.path.join(str(tmp_path / "demo"), "raw", "lung_masks", name))) > 0
        expected = lung_box_from_mask(lungs)
        assert [int(box[k]) for k in ("row_min", "col_min", "row_max", "col_max")] == expected.tolist()
        assert box["lung_found"] == "1" and box["height"] == box["width"] == str(SIZE)
