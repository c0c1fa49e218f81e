"""Tests of the detection datalists: BUSI boxes from masks, frames + box CSV / COCO JSON, every error, the split."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from datalist_helpers import esc
from PIL import Image

from pipelines.data import (
    DatasetError,
    busi_detection_datalist,
    detection_datalist,
    detection_split,
    frame_detection_datalist,
)

# --------------------------------------------------------------------------------------------------- BUSI


def _save(path, array, mode="L"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8), mode=mode).save(path)


@pytest.fixture
def busi_root(tmp_path):
    """benign (1): two lesions in two mask files, one of them two pixels joined only diagonally; malignant (1): one
    lesion; normal (1): an all-zero mask. Images 20 x 30 (H x W)."""
    root = tmp_path / "busi"
    image = np.full((20, 30), 100, np.uint8)
    first = np.zeros((20, 30), np.uint8)
    first[2:6, 3:9] = 255  # rows 2..5, cols 3..8 -> [2, 3, 6, 9]
    second = np.zeros((20, 30), np.uint8)
    second[10:13, 20:25] = 255
    second[13, 25] = 255  # 8-connected to (12, 24) -> one component [10, 20, 14, 26]
    _save(root / "benign" / "benign (1).png", image)
    _save(root / "benign" / "benign (1)_mask.png", first)
    _save(root / "benign" / "benign (1)_mask_1.png", second)
    lesion = np.zeros((20, 30), np.uint8)
    lesion[7:9, 0:30] = 255  # touching both sides: [7, 0, 9, 30]
    _save(root / "malignant" / "malignant (1).png", np.dstack([image] * 3), mode="RGB")
    _save(root / "malignant" / "malignant (1)_mask.png", lesion)
    _save(root / "normal" / "normal (1).png", image)
    _save(root / "normal" / "normal (1)_mask.png", np.zeros((20, 30)))
    return str(root)


def test_busi_boxes_from_masks(busi_root):
    items = busi_detection_datalist(busi_root)
    assert [it["case_id"] for it in items] == ["benign (1)", "malignant (1)", "normal (1)"]
    benign, malignant, normal = items
    assert benign == {
        "image": os.path.join(busi_root, "benign", "benign (1).png"),
        "box": [[2.0, 3.0, 6.0, 9.0], [10.0, 20.0, 14.0, 26.0]],
        "label": [0, 0],
        "case_id": "benign (1)",
        "patient_id": "benign (1)",
        "class_name": "benign",
        "size": [20, 30],
    }
    assert all(isinstance(v, float) for box in benign["box"] for v in box)
    assert malignant["box"] == [[7.0, 0.0, 9.0, 30.0]] and malignant["label"] == [0]
    assert (normal["box"], normal["label"], normal["class_name"]) == ([], [], "normal")
    assert [it["case_id"] for it in busi_detection_datalist(busi_root, include_normal=False)] == [
        "benign (1)",
        "malignant (1)",
    ]


def test_busi_empty_lesion_mask(busi_root):
    mask = os.path.join(busi_root, "malignant", "malignant (1)_mask.png")
    _save(mask, np.zeros((20, 30)))
    image = os.path.join(busi_root, "malignant", "malignant (1).png")
    with pytest.raises(DatasetError, match=f"{esc(image)}: its mask\\(s\\) {esc(mask)} are empty"):
        busi_detection_datalist(busi_root)


def test_detection_datalist_layouts(busi_root, tmp_path):
    assert detection_datalist(busi_root) == busi_detection_datalist(busi_root)
    assert detection_datalist(busi_root, return_label_names=True)[1] == ("lesion",)
    root = _frames(tmp_path)
    _write_csv(root, _CSV_ROWS)
    assert detection_datalist(root) == frame_detection_datalist(root)
    with pytest.raises(ValueError, match="layout"):
        detection_datalist(root, layout="coco")


# --------------------------------------------------------------------------------------------------- frames
# a.png: RGB 30 x 40 (H x W); sub/b.png: gray 50 x 60; c.png: gray 16 x 16 (a negative frame)
_CSV_HEADER = "image,x1,y1,x2,y2,label,patient_id"
_CSV_ROWS = [
    "a.png,3,4,10,12,mass,P1",
    "a.png,0,0,40,30,cyst,P1",
    "sub/b.png,10.5,20.25,30,50,mass,P2",
    "c.png,,,,,,P1",
]
_EXPECTED = {
    "a": {"box": [[4.0, 3.0, 12.0, 10.0], [0.0, 0.0, 30.0, 40.0]], "label": [1, 0], "patient_id": "P1",
          "class_name": "lesion", "size": [30, 40]},
    "c": {"box": [], "label": [], "patient_id": "P1", "class_name": "negative", "size": [16, 16]},
    "sub/b": {"box": [[20.25, 10.5, 50.0, 30.0]], "label": [1], "patient_id": "P2", "class_name": "lesion",
              "size": [50, 60]},
}


def _frames(tmp_path) -> str:
    root = tmp_path / "frames"
    _save(root / "a.png", np.full((30, 40, 3), 50), mode="RGB")
    _save(root / "sub" / "b.png", np.full((50, 60), 50))
    _save(root / "c.png", np.full((16, 16), 50))
    return str(root)


def _write_csv(root, rows, header=_CSV_HEADER, name="boxes.csv") -> str:
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("\n".join([header, *rows]) + "\n")
    return path


def _coco(root, name="annotations.json", **changes) -> str:
    data = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 40, "height": 30, "patient_id": "P1"},
            {"id": 8, "file_name": "sub/b.png", "width": 60, "height": 50, "patient_id": "P2"},
            {"id": 9, "file_name": "c.png", "width": 16, "height": 16, "patient_id": "P1"},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [3, 4, 7, 8], "category_id": 2},
            {"id": 2, "image_id": 7, "bbox": [0, 0, 40, 30], "category_id": 5},
            {"id": 3, "image_id": 8, "bbox": [10.5, 20.25, 19.5, 29.75], "category_id": 2},
        ],
        "categories": [{"id": 2, "name": "mass"}, {"id": 5, "name": "cyst"}],
    }
    data.update(changes)
    path = os.path.join(root, name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def _check_expected(root, items):
    assert [it["case_id"] for it in items] == ["a", "c", "sub/b"]
    for it in items:
        assert it["image"] == os.path.join(root, *it["case_id"].split("/")) + ".png"
        assert {k: v for k, v in it.items() if k not in ("image", "case_id")} == _EXPECTED[it["case_id"]]


def test_frames_csv(tmp_path):
    root = _frames(tmp_path)
    _write_csv(root, _CSV_ROWS)
    items, names = frame_detection_datalist(root, return_label_names=True)
    assert names == ("cyst", "mass")
    _check_expected(root, items)


def test_frames_csv_and_coco_agree(tmp_path):
    root = _frames(tmp_path)
    csv_path = _write_csv(root, _CSV_ROWS)
    coco_path = _coco(root)
    with pytest.raises(DatasetError, match="both .*boxes.csv and .*annotations.json exist"):
        frame_detection_datalist(root)
    from_csv = frame_detection_datalist(root, box_file=csv_path, return_label_names=True)
    from_coco = frame_detection_datalist(root, box_file="annotations.json", return_label_names=True)
    assert from_csv == from_coco
    _check_expected(root, from_coco[0])
    os.remove(csv_path)
    assert frame_detection_datalist(root) == from_csv[0]


def test_frames_csv_optional_columns_and_numeric_labels(tmp_path):
    root = _frames(tmp_path)
    _write_csv(root, ["sub/b.png,1,2,3,4,10", "a.png,1,2,3,4,2", "a.png,5,6,7,8,", "c.png,,,,,"],
               header="image,x1,y1,x2,y2,label")
    items, names = frame_detection_datalist(root, return_label_names=True)
    assert names == ("2", "10", "lesion")  # natural order: 2 before 10
    by_id = {it["case_id"]: it for it in items}
    assert by_id["a"]["label"] == [0, 2] and by_id["sub/b"]["label"] == [1]
    assert [it["patient_id"] for it in items] == ["a", "c", "sub/b"]  # no patient_id: the case id
    # comments and blank lines before the header, the columns in any order
    _write_csv(root, ["1,2,3,4,a.png", ",,,,sub/b.png", ",,,,c.png"], header="# comment\n\nx1,y1,x2,y2,image")
    items, names = frame_detection_datalist(root, return_label_names=True)
    assert names == ("lesion",) and items[0]["box"] == [[2.0, 1.0, 4.0, 3.0]] and items[0]["label"] == [0]


def test_frames_dicom_size(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    root = tmp_path / "dicom"
    root.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((6, 9), np.uint16)), str(root / "f.dcm"))  # 6 rows, 9 columns
    _write_csv(str(root), ["f.dcm,0,0,9,6,,"])
    (item,) = frame_detection_datalist(str(root))
    assert item["size"] == [6, 9] and item["box"] == [[0.0, 0.0, 6.0, 9.0]]
    _write_csv(str(root), ["f.dcm,0,0,9,7,,"])
    with pytest.raises(DatasetError, match="line 2: .*outside image"):
        frame_detection_datalist(str(root))


@pytest.mark.parametrize(
    "row, message",
    [
        (
            "a.png,3,4,41,12,mass,P1",
            "line 3: box x1,y1,x2,y2 = \\[3.0, 4.0, 41.0, 12.0\\] lies outside image .*a.png of 40x30",
        ),
        ("a.png,-1,4,10,12,mass,P1", "line 3: .* lies outside image"),
        ("a.png,3,4,10,31,mass,P1", "line 3: .* lies outside image"),
        ("a.png,10,4,10,12,mass,P1", "line 3: .* has x2 <= x1"),
        ("a.png,3,12,10,4,mass,P1", "line 3: .* has y2 <= y1"),
        ("missing.png,3,4,10,12,mass,P1", "line 3: unknown image 'missing.png'"),
        ("a.png,3,4,,12,mass,P1", "line 3: .*give all four numbers"),
        ("a.png,3,four,10,12,mass,P1", "line 3: .*are not numbers"),
        ("a.png,3,4,nan,12,mass,P1", "line 3: .*not a finite number"),
        ("a.png,3,4,10,12,mass", "line 3: expected 7 fields"),
        ("a.png,3,4,10,12,mass,P9", "line 4: patient_id 'P1' of image .*a.png disagrees with 'P9'"),
        (",3,4,10,12,mass,P1", "line 3: the image is empty"),
        ("c.png,1,1,2,2,mass,P1", "line 3: image .*c.png has a box but .*line 2 marks it as a negative frame"),
    ],
)
def test_frames_csv_bad_rows(tmp_path, row, message):
    root = _frames(tmp_path)
    path = _write_csv(root, ["c.png,,,,,,P1", row, "a.png,1,1,2,2,mass,P1", "sub/b.png,,,,,,P2"])
    with pytest.raises(DatasetError, match=f"box file {esc(path)}, {message}"):
        frame_detection_datalist(root)


@pytest.mark.parametrize(
    "header, message",
    [
        ("image,x1,y1,x2,y2,x1", "column\\(s\\) \\['x1'\\] appear more than once"),
        ("image,x1,y1,x2,label", "missing \\['y2'\\]"),
        ("image,x1,y1,x2,y2,patient", "unknown column\\(s\\) \\['patient'\\]"),
        ("a.png,3,4,10,12,mass,P1", "a header row is required"),
    ],
)
def test_frames_csv_bad_header(tmp_path, header, message):
    root = _frames(tmp_path)
    path = _write_csv(root, ["a.png,3,4,10,12"], header=header)
    with pytest.raises(DatasetError, match=f"box file {esc(path)}, line 1 \\(header\\): .*{message}"):
        frame_detection_datalist(root)


def test_frames_unreadable_unlisted_and_empty(tmp_path):
    root = _frames(tmp_path)
    with pytest.raises(DatasetError, match="no box file in .*frames: expected boxes.csv"):
        frame_detection_datalist(root)
    path = _write_csv(root, ["a.png,1,1,2,2,,", "c.png,,,,,,"])
    with pytest.raises(DatasetError, match="1 frame\\(s\\) under .* are not in the box file .*: sub/b.png"):
        frame_detection_datalist(root)
    items = frame_detection_datalist(root, unlisted="negative")
    assert [(it["case_id"], it["box"], it["size"]) for it in items][-1] == ("sub/b", [], [50, 60])
    assert [it["case_id"] for it in frame_detection_datalist(root, unlisted="ignore")] == ["a", "c"]
    with pytest.raises(ValueError, match="unlisted"):
        frame_detection_datalist(root, unlisted="skip")
    with open(os.path.join(root, "c.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetError, match=f"{esc(path)}, line 3: unreadable image {esc(os.path.join(root, 'c.png'))}"):
        frame_detection_datalist(root, unlisted="ignore")
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_csv(str(empty), [])
    with pytest.raises(DatasetError, match="names no image and no frame is under .*: the dataset is empty"):
        frame_detection_datalist(str(empty))
    open(empty / "boxes.csv", "w").close()
    with pytest.raises(DatasetError, match="box file .*boxes.csv is empty"):
        frame_detection_datalist(str(empty))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"annotations": [{"id": 4, "image_id": 99, "bbox": [1, 1, 2, 2], "category_id": 2}]},
         "annotations\\[0\\] \\(id 4\\): unknown image_id 99"),
        ({"annotations": [{"id": 4, "image_id": 7, "bbox": [1, 1, 0, 2], "category_id": 2}]},
         "annotations\\[0\\] \\(id 4\\): box .* has x2 <= x1"),
        ({"annotations": [{"id": 4, "image_id": 7, "bbox": [35, 1, 6, 2], "category_id": 2}]},
         "annotations\\[0\\] \\(id 4\\): box .* lies outside image"),
        ({"annotations": [{"id": 4, "image_id": 7, "bbox": [1, 1, 2], "category_id": 2}]},
         "annotations\\[0\\] \\(id 4\\): bbox must be four numbers"),
        ({"annotations": [{"id": 4, "image_id": 7, "bbox": [1, 1, 2, 2], "category_id": 3}]},
         "annotations\\[0\\] \\(id 4\\): unknown category_id 3"),
        ({"images": [{"id": 7, "file_name": "a.png", "width": 41, "height": 30}]},
         "images\\[0\\] \\(id 7\\): width 41 disagrees with the image"),
        ({"images": [{"id": 7, "file_name": "nope.png"}]}, "images\\[0\\] \\(id 7\\): unknown image 'nope.png'"),
        ({"images": [{"id": 7, "file_name": "a.png"}, {"id": 7, "file_name": "c.png"}]},
         "images\\[1\\] \\(id 7\\): image id 7 appears twice"),
        ({"images": {"id": 7}}, "'images' must be a list"),
    ],
)
def test_frames_coco_errors(tmp_path, changes, message):
    root = _frames(tmp_path)
    path = _coco(root, **changes)
    with pytest.raises(DatasetError, match=f"COCO file {esc(path)}(, |: ){message}"):
        frame_detection_datalist(root, unlisted="ignore")


# --------------------------------------------------------------------------------------------------- split


def _patients(num_patients=20, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for p in range(num_patients):
        positive = p % 3 != 0
        for k in range(int(rng.integers(1, 5))):
            box = [[1.0, 1.0, 5.0, 5.0]] if positive and k % 2 == 0 else []
            items.append({"case_id": f"p{p}_f{k}", "patient_id": f"p{p}", "box": box, "label": [0] * len(box)})
    return items


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_split_keeps_patients_apart(seed):
    items = _patients(seed=seed)
    train, val = detection_split(items, val_fraction=0.2, seed=seed)
    assert len(train) + len(val) == len(items)
    assert not {it["patient_id"] for it in train} & {it["patient_id"] for it in val}
    assert [it for it in items if it in val] == val  # datalist order, the same objects
    patients = {it["patient_id"] for it in items}
    # 1 / 5 of the images, up to one patient (at most 4 frames) more or less; both sides have several patients
    assert abs(len(val) - len(items) / 5) <= 4
    assert 2 <= len({it["patient_id"] for it in val}) <= len(patients) - 10
    assert any(it["box"] for it in val) and any(not it["box"] for it in val)  # stratified: both kinds
    assert detection_split(items, val_fraction=0.2, seed=seed) == (train, val)  # deterministic
    # the folds of val_fraction 0.2 cover every item once
    vals = [detection_split(items, 0.2, seed, fold=f)[1] for f in range(5)]
    assert sorted(it["case_id"] for v in vals for it in v) == sorted(it["case_id"] for it in items)


def test_detection_split_errors_and_image_level():
    items = _patients(num_patients=4)
    message = "val_fraction=0.2 needs at least 5 patients \\('patient_id'\\), the datalist has 4"
    with pytest.raises(DatasetError, match=message):
        detection_split(items, val_fraction=0.2)
    train, val = detection_split(items, val_fraction=0.5)
    assert not {it["patient_id"] for it in train} & {it["patient_id"] for it in val}
    for bad in (0.0, 0.6, -1):
        with pytest.raises(ValueError, match="val_fraction must be in"):
            detection_split(items, val_fraction=bad)
    with pytest.raises(ValueError, match="no group key 'study'"):
        detection_split(items, group_key="study")
    train, val = detection_split(items, val_fraction=0.25, group_key=None)
    assert len(val) in (len(items) // 4, len(items) // 4 + 1)


def test_auto_layout_names_both_layouts_when_neither_is_there(tmp_path):
    from pipelines.data.datalists import detection_datalist

    with pytest.raises(DatasetError, match=r"class folder .*normal.* Or, for scanner frames: .*boxes\.csv"):
        detection_datalist(str(tmp_path))
