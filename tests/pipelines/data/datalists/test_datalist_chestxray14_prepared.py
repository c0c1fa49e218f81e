"""The prepared ChestX-ray14 task folder: its datalist (classes from folders, lung boxes joined from the CSV, errors)
and the classification transforms that turn its items into network inputs and class regions."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.data import DatasetError, chestxray14_prepared_datalist, read_lung_boxes
from transforms.recipes import (
    cxr_classification_eval_transforms,
    cxr_classification_train_transforms,
)

NE = ("No Finding", "Effusion")
# (split, class folder, name, (height, width), lung box in the original grid or None when not found)
IMAGES = [
    ("train", "No_Finding", "00000001_000", (40, 30), (4, 3, 36, 27)),
    ("train", "No_Finding", "00000003_001", (40, 30), None),
    ("train", "Effusion", "00000002_000", (50, 40), (10, 4, 40, 36)),
    ("train", "Effusion", "00000010_000", (40, 30), (2, 2, 38, 28)),
    ("val", "No_Finding", "00000004_000", (40, 30), (4, 3, 36, 27)),
    ("val", "Effusion", "00000005_000", (40, 30), (4, 3, 36, 27)),
    ("test", "No_Finding", "00000006_000", (40, 30), (4, 3, 36, 27)),
    ("test", "Effusion", "00000007_000", (40, 30), (8, 6, 32, 24)),
]


def _write_png(path: str, hw: tuple[int, int], mode: str = "L") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(len(path))
    if mode == "RGBA":
        pixels = rng.integers(0, 256, (*hw, 4), dtype=np.uint8)
        pixels[..., 1] = pixels[..., 2] = pixels[..., 0]
        Image.fromarray(pixels, mode="RGBA").save(path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, hw, dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, hw, dtype=np.uint8)).save(path)


def _write_boxes(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "row_min", "col_min", "row_max", "col_max", "height", "width",
                                               "lung_found"])
        writer.writeheader()
        writer.writerows(rows)


def _box_rows(images=IMAGES) -> list[dict]:
    rows = []
    for split, folder, name, (h, w), box in images:
        r0, c0, r1, c1 = box if box is not None else (0, 0, h, w)
        rows.append({"image": f"{split}/{folder}/{name}.png", "row_min": r0, "col_min": c0, "row_max": r1,
                     "col_max": c1, "height": h, "width": w, "lung_found": int(box is not None)})
    return rows


@pytest.fixture
def task_dir(tmp_path) -> str:
    root = tmp_path / "prepared" / "ne"
    for split, folder, name, hw, _ in IMAGES:
        _write_png(str(root / split / folder / f"{name}.png"), hw, mode="RGBA" if name == "00000010_000" else "L")
    _write_boxes(str(root / "lung_boxes.csv"), _box_rows())
    return str(root)


def test_items_classes_and_lung_boxes(task_dir):
    items = chestxray14_prepared_datalist(task_dir, "train")
    assert [i["case_id"] for i in items] == ["00000001_000", "00000002_000", "00000003_001", "00000010_000"]
    by_id = {i["case_id"]: i for i in items}
    first = by_id["00000001_000"]
    assert first == {
        "image": os.path.join(task_dir, "train", "No_Finding", "00000001_000.png"), "label": 0,
        "finding": "No Finding", "case_id": "00000001_000", "lung_box": [4, 3, 36, 27], "lung_found": 1,
    }
    assert by_id["00000002_000"]["label"] == 1 and by_id["00000002_000"]["finding"] == "Effusion"
    assert by_id["00000002_000"]["lung_box"] == [10, 4, 40, 36]
    assert by_id["00000003_001"]["lung_found"] == 0 and by_id["00000003_001"]["lung_box"] == [0, 0, 40, 30]
    assert [i["label"] for i in chestxray14_prepared_datalist(task_dir, "test")] == [0, 1]


def test_whole_image_boxes_without_a_box_file(task_dir):
    os.remove(os.path.join(task_dir, "lung_boxes.csv"))
    items = chestxray14_prepared_datalist(task_dir, "train", lung_box_file=None)
    assert {i["case_id"]: i["lung_box"] for i in items}["00000002_000"] == [0, 0, 50, 40]
    assert {i["lung_found"] for i in items} == {0}


def test_classes_from_the_folder_name_or_the_class_folders(task_dir, tmp_path):
    renamed = str(tmp_path / "my_effusion_task")
    os.rename(task_dir, renamed)
    items = chestxray14_prepared_datalist(renamed, "val")  # no task name: the class folders match only "ne"
    assert [(i["finding"], i["label"]) for i in items] == [("No Finding", 0), ("Effusion", 1)]
    # explicit classes in another order
    items = chestxray14_prepared_datalist(renamed, "val", class_names=("Effusion", "No Finding"))
    assert [(i["finding"], i["label"]) for i in items] == [("No Finding", 1), ("Effusion", 0)]


def test_missing_box_file_names_the_command(task_dir):
    os.remove(os.path.join(task_dir, "lung_boxes.csv"))
    with pytest.raises(DatasetError, match=r"lung_boxes\.csv does not exist.*pipelines lung-boxes.*null"):
        chestxray14_prepared_datalist(task_dir, "train")


def test_image_missing_from_the_box_file(task_dir):
    _write_boxes(os.path.join(task_dir, "lung_boxes.csv"), _box_rows(IMAGES[1:]))
    with pytest.raises(DatasetError, match=r"00000001_000\.png \(train/No_Finding/00000001_000\.png\) has no row"):
        chestxray14_prepared_datalist(task_dir, "train")


def test_box_file_of_other_images_and_bad_rows(task_dir):
    rows = _box_rows()
    rows[2]["height"], rows[2]["row_max"] = 60, 50
    _write_boxes(os.path.join(task_dir, "lung_boxes.csv"), rows)
    with pytest.raises(DatasetError, match=r"00000002_000\.png is 50 x 40 but .* records 60 x 40"):
        chestxray14_prepared_datalist(task_dir, "train")
    rows = _box_rows()
    rows[3]["col_max"] = 31  # outside the 30-pixel wide image
    _write_boxes(os.path.join(task_dir, "lung_boxes.csv"), rows)
    with pytest.raises(DatasetError, match=r"line 5: box \[2, 2, 38, 31\] of train/Effusion/00000010_000\.png"):
        read_lung_boxes(os.path.join(task_dir, "lung_boxes.csv"))
    with open(os.path.join(task_dir, "lung_boxes.csv"), "w") as f:
        f.write("image,row_min,col_min,row_max,col_max\n")
    with pytest.raises(DatasetError, match=r"lacks the column\(s\) \['height', 'width', 'lung_found'\]"):
        chestxray14_prepared_datalist(task_dir, "train")


def test_layout_errors(task_dir):
    with pytest.raises(ValueError, match="split must be one of"):
        chestxray14_prepared_datalist(task_dir, "validation")
    os.makedirs(os.path.join(task_dir, "val", "Pneumothorax"))
    with pytest.raises(DatasetError, match=r"\['Pneumothorax'\], which are not classes"):
        chestxray14_prepared_datalist(task_dir, "val")
    for name in os.listdir(os.path.join(task_dir, "test", "Effusion")):
        os.remove(os.path.join(task_dir, "test", "Effusion", name))
    os.remove(os.path.join(task_dir, "test", "No_Finding", "00000006_000.png"))
    with pytest.raises(DatasetError, match="holds no PNG images"):
        chestxray14_prepared_datalist(task_dir, "test")
    os.rmdir(os.path.join(task_dir, "test", "Effusion"))
    with pytest.raises(DatasetError, match=r"class folder\(s\) .*Effusion.* do not exist"):
        chestxray14_prepared_datalist(task_dir, "test")
    with pytest.raises(DatasetError, match="does not exist"):
        chestxray14_prepared_datalist(os.path.join(task_dir, "missing"), "train")


def test_transforms_give_image_and_class_region(task_dir):
    items = {i["case_id"]: i for i in chestxray14_prepared_datalist(task_dir, "train")}
    out = cxr_classification_eval_transforms(NE, image_size=20)(items["00000002_000"])
    assert out["image"].shape == (1, 20, 20) and out["image"].dtype == torch.float32
    assert -1.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    # the box [10, 4, 40, 36] of the 50 x 40 image on the 20 x 20 grid: rows x 0.4, columns x 0.5
    torch.testing.assert_close(out["lung_box"], torch.tensor([4.0, 2.0, 16.0, 18.0]))
    expected = np.zeros((20, 20), dtype=np.float32)
    expected[10:16, 2:18] = 1  # Effusion: the bottom half of the box, rows 10..15
    np.testing.assert_array_equal(out["region"][0].numpy(), expected)
    normal = cxr_classification_eval_transforms(NE, image_size=20)(items["00000001_000"])
    assert float(normal["region"].sum()) == 0.0  # No Finding has no region
    # an RGBA PNG is one grayscale channel; training augmentation keeps the shapes and moves the region along
    train = cxr_classification_train_transforms(NE, image_size=20, affine_prob=1.0)
    train.set_random_state(0)
    aug = train(items["00000010_000"])
    assert aug["image"].shape == aug["region"].shape == (1, 20, 20)
    assert set(np.unique(aug["region"].numpy())) <= {0.0, 1.0} and aug["region"].sum() > 0


def test_16_bit_png_is_scaled(tmp_path):
    path = str(tmp_path / "ne" / "test" / "Effusion" / "x.png")
    os.makedirs(os.path.dirname(path))
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(path)
    out = cxr_classification_eval_transforms(NE, image_size=8)(
        {"image": path, "label": 1, "lung_box": [0, 0, 8, 8]}
    )
    torch.testing.assert_close(out["image"], torch.ones(1, 8, 8))  # white: 255 -> 1 -> (1 - 0.5) / 0.5
