"""Tests of the datalist scanners: real layouts and every validation error."""

from __future__ import annotations

import gzip
import os
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pipelines.data import (
    BRATS_MODALITIES,
    BUSI_CLASSES,
    BUSI_LESION_CLASSES,
    DatasetError,
    brats_datalist,
    busi_class_names,
    busi_datalist,
    chestxray14_datalist,
    hvsmr_datalist,
    make_brats_demo,
    make_busi_demo,
    make_chestxray14_demo,
    make_hvsmr_demo,
    make_malc_demo,
    malc_datalist,
    segmentation_datalist,
)

CASE0 = "Brats18_DEMO_0_1"


def esc(path) -> str:
    return re.escape(str(path))


def _copy(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def _rewrite(path, data=None, affine=None) -> None:
    """Rewrite a NIfTI file with new data and/or affine."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj) if data is None else data
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), str(path))


@pytest.fixture(scope="module")
def brats_src(tmp_path_factory):
    return make_brats_demo(str(tmp_path_factory.mktemp("brats")), num_cases=3, shape=(24, 24, 20), seed=0)


@pytest.fixture(scope="module")
def malc_src(tmp_path_factory):
    return make_malc_demo(str(tmp_path_factory.mktemp("malc")), num_cases=2, shape=(24, 28, 24), seed=0)


@pytest.fixture(scope="module")
def hvsmr_src(tmp_path_factory):
    return make_hvsmr_demo(str(tmp_path_factory.mktemp("hvsmr")), num_cases=2, shape=(24, 24, 20), seed=0)


@pytest.fixture(scope="module")
def busi_src(tmp_path_factory):
    return make_busi_demo(str(tmp_path_factory.mktemp("busi")), num_per_class=4, size=48, seed=0)


@pytest.fixture(scope="module")
def cxr_src(tmp_path_factory):
    return make_chestxray14_demo(str(tmp_path_factory.mktemp("cxr")), num_patients=8, size=48, seed=0)


@pytest.fixture
def brats(brats_src, tmp_path):
    return _copy(brats_src, tmp_path / "brats")


def _case_file(root, key, case=CASE0, ext=".nii.gz") -> str:
    return os.path.join(root, case, f"{case}_{key}{ext}")


# ------------------------------------------------------------------------------------- BraTS
def test_brats_flat_layout(brats_src):
    items = brats_datalist(brats_src)
    assert [it["case_id"] for it in items] == [f"Brats18_DEMO_{i}_1" for i in range(3)]
    first = items[0]
    assert first["image"] == [_case_file(brats_src, m) for m in BRATS_MODALITIES]
    assert first["label"] == _case_file(brats_src, "seg")
    assert first["grade"] == "unknown" and set(first) == {"image", "label", "case_id", "grade"}


def test_brats_official_layout_and_nii(brats, tmp_path):
    for index, grade in ((0, "HGG"), (1, "HGG"), (2, "LGG")):
        os.makedirs(os.path.join(brats, grade), exist_ok=True)
        case = f"Brats18_DEMO_{index}_1"
        shutil.move(os.path.join(brats, case), os.path.join(brats, grade, case))
    # an uncompressed .nii volume is accepted too
    gz = os.path.join(brats, "LGG", "Brats18_DEMO_2_1", "Brats18_DEMO_2_1_flair.nii.gz")
    with gzip.open(gz) as f, open(gz[:-3], "wb") as out:
        out.write(f.read())
    os.remove(gz)
    open(os.path.join(brats, "survival_data.csv"), "w").close()
    items = brats_datalist(brats)
    assert [(it["case_id"], it["grade"]) for it in items] == [
        ("Brats18_DEMO_0_1", "HGG"),
        ("Brats18_DEMO_1_1", "HGG"),
        ("Brats18_DEMO_2_1", "LGG"),
    ]
    assert items[2]["image"][3] == gz[:-3]
    # pointing at the HGG folder itself still gives the grade
    assert [it["grade"] for it in brats_datalist(os.path.join(brats, "HGG"))] == ["HGG", "HGG"]


def test_brats_duplicate_case(brats):
    os.makedirs(os.path.join(brats, "HGG"))
    shutil.copytree(os.path.join(brats, CASE0), os.path.join(brats, "HGG", CASE0))
    with pytest.raises(DatasetError, match=f"case {CASE0} appears twice"):
        brats_datalist(brats)


def test_brats_missing_modality(brats):
    os.remove(_case_file(brats, "t1ce"))
    expected = _case_file(brats, "t1ce")
    with pytest.raises(DatasetError, match=f"case {CASE0} is missing its t1ce volume: expected {esc(expected)}"):
        brats_datalist(brats)


def test_brats_missing_seg(brats):
    os.remove(_case_file(brats, "seg"))
    with pytest.raises(DatasetError, match=f"missing its segmentation: expected {esc(_case_file(brats, 'seg'))}"):
        brats_datalist(brats)
    items = brats_datalist(brats, require_label=False)
    assert "label" not in items[0] and "label" in items[1]


def test_brats_garbage_file(brats):
    with open(_case_file(brats, "t2"), "wb") as f:
        f.write(b"this is not a NIfTI file" * 10)
    with pytest.raises(DatasetError, match=f"{esc(_case_file(brats, 't2'))}: unreadable NIfTI file"):
        brats_datalist(brats)


def test_brats_truncated_file(brats):
    path = _case_file(brats, "flair")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"{esc(path)}: (truncated|unreadable) NIfTI file"):
        brats_datalist(brats)


def test_brats_multi_member_gzip_is_complete(brats):
    path = _case_file(brats, "t1ce")
    with gzip.open(path) as f:
        data = f.read()
    with open(path, "wb") as f:  # two gzip members: the trailer holds only the second one's size
        f.write(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    assert len(brats_datalist(brats)) == 3
    with open(path, "wb") as f:
        f.write(gzip.compress(data[:1000]) + gzip.compress(data[1000:-8]))
    with pytest.raises(DatasetError, match=f"{esc(path)}: truncated NIfTI file"):
        brats_datalist(brats)


def test_brats_truncated_uncompressed_file(brats):
    gz = _case_file(brats, "t1")
    with gzip.open(gz) as f:
        data = f.read()
    os.remove(gz)
    with open(gz[:-3], "wb") as f:
        f.write(data[:-100])
    with pytest.raises(DatasetError, match=f"{esc(gz[:-3])}: truncated NIfTI file"):
        brats_datalist(brats)


def test_brats_shape_mismatch(brats):
    path = _case_file(brats, "t2")
    _rewrite(path, data=np.zeros((24, 24, 18), np.float32))
    with pytest.raises(
        DatasetError,
        match=rf"shape mismatch: {esc(_case_file(brats, 't1'))} has shape \(24, 24, 20\) "
        rf"but {esc(path)} has shape \(24, 24, 18\)",
    ):
        brats_datalist(brats)


def test_brats_affine_mismatch(brats):
    path = _case_file(brats, "seg")
    affine = nib.load(path).affine.copy()
    affine[0, 3] += 0.5
    _rewrite(path, affine=affine)
    with pytest.raises(
        DatasetError, match=f"affine mismatch: {esc(_case_file(brats, 't1'))} has affine .* but {esc(path)} has affine"
    ):
        brats_datalist(brats)
    # differences within the tolerance are accepted
    affine[0, 3] -= 0.5 - 1e-4
    _rewrite(path, affine=affine)
    assert len(brats_datalist(brats)) == 3


def test_brats_unexpected_label(brats):
    path = _case_file(brats, "seg", case="Brats18_DEMO_1_1")
    seg = np.asarray(nib.load(path).dataobj).copy()
    seg[0, 0, :2] = 3
    _rewrite(path, data=seg)
    with pytest.raises(
        DatasetError, match=rf"{esc(path)}: unexpected label values \[3\]; allowed values are \[0, 1, 2, 4\]"
    ):
        brats_datalist(brats)
    assert len(brats_datalist(brats, check_labels=False)) == 3


def test_brats_float_labels(brats):
    path = _case_file(brats, "seg")
    seg = np.asarray(nib.load(path).dataobj).astype(np.float32)
    _rewrite(path, data=seg)
    assert len(brats_datalist(brats)) == 3  # integral float labels are fine
    seg[0, 0, 0] = 0.5
    _rewrite(path, data=seg)
    with pytest.raises(DatasetError, match=rf"unexpected label values \[0.5\]"):
        brats_datalist(brats)


def test_brats_empty_and_missing_root(tmp_path):
    with pytest.raises(
        DatasetError, match=rf"no BraTS cases found under {esc(tmp_path)}; expected <root>/<Case>/<Case>_\{{t1,t1ce"
    ):
        brats_datalist(str(tmp_path))
    with pytest.raises(DatasetError, match=f"BraTS root {esc(tmp_path / 'nope')} does not exist"):
        brats_datalist(str(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match=f"BraTS root {esc(tmp_path / 'file')} is not a folder"):
        brats_datalist(str(tmp_path / "file"))


# ------------------------------------------------------------------------------ MALC / HVSMR
def test_malc_and_hvsmr_datalists(malc_src, hvsmr_src):
    items = malc_datalist(malc_src)
    assert items == [
        {
            "image": os.path.join(malc_src, "images", f"{c}.nii.gz"),
            "label": os.path.join(malc_src, "masks", f"{c}.nii.gz"),
            "case_id": c,
        }
        for c in ("1000_3", "1001_3")
    ]
    items = hvsmr_datalist(hvsmr_src)
    assert [it["case_id"] for it in items] == ["training_axial_crop_pat0", "training_axial_crop_pat1"]
    assert items[1]["label"] == os.path.join(hvsmr_src, "masks", "training_axial_crop_pat1-label.nii.gz")


def test_segmentation_pairing_suffixes_and_natural_order(malc_src, tmp_path):
    root = _copy(malc_src, tmp_path / "malc")
    masks = os.path.join(root, "masks")
    os.rename(os.path.join(masks, "1000_3.nii.gz"), os.path.join(masks, "1000_3_glm.nii.gz"))
    for n in (2, 10):  # natural order: case 2 before case 10
        shutil.copy(os.path.join(root, "images", "1001_3.nii.gz"), os.path.join(root, "images", f"case{n}.nii"))
        with gzip.open(os.path.join(masks, "1001_3.nii.gz")) as f, open(
            os.path.join(masks, f"case{n}_seg.nii"), "wb"
        ) as out:
            out.write(f.read())
    # the copied images are gzip data with a .nii name: unreadable
    with pytest.raises(
        DatasetError, match=f"{esc(os.path.join(root, 'images', 'case10.nii'))}: (unreadable|truncated)"
    ):
        malc_datalist(root)
    for n in (2, 10):
        path = os.path.join(root, "images", f"case{n}.nii")
        with gzip.open(os.path.join(root, "images", "1001_3.nii.gz")) as f, open(path, "wb") as out:
            out.write(f.read())
    items = malc_datalist(root)
    assert [it["case_id"] for it in items] == ["1000_3", "1001_3", "case2", "case10"]
    assert items[0]["label"].endswith("1000_3_glm.nii.gz") and items[3]["label"].endswith("case10_seg.nii")


def test_segmentation_missing_ambiguous_and_orphan_masks(malc_src, tmp_path):
    root = _copy(malc_src, tmp_path / "malc")
    masks = os.path.join(root, "masks")
    shutil.copy(os.path.join(masks, "1000_3.nii.gz"), os.path.join(masks, "1000_3_mask.nii.gz"))
    with pytest.raises(DatasetError, match=f"{esc(os.path.join(root, 'images', '1000_3.nii.gz'))} has several masks"):
        malc_datalist(root)
    os.rename(os.path.join(masks, "1000_3_mask.nii.gz"), os.path.join(masks, "1000_4.nii.gz"))
    with pytest.raises(DatasetError, match=f"{esc(os.path.join(masks, '1000_4.nii.gz'))} matches no image"):
        malc_datalist(root)
    os.remove(os.path.join(masks, "1000_4.nii.gz"))
    os.remove(os.path.join(masks, "1001_3.nii.gz"))
    with pytest.raises(
        DatasetError,
        match=f"{esc(os.path.join(root, 'images', '1001_3.nii.gz'))} has no mask: "
        f"expected {esc(os.path.join(masks, '1001_3.nii.gz'))}",
    ):
        malc_datalist(root)
    items = malc_datalist(root, require_label=False)
    assert "label" in items[0] and "label" not in items[1]
    shutil.rmtree(masks)
    with pytest.raises(DatasetError, match=f"mask folder {esc(masks)} does not exist"):
        malc_datalist(root)
    assert [set(it) for it in malc_datalist(root, require_label=False)] == [{"image", "case_id"}] * 2


def test_segmentation_label_shape_and_affine_errors(hvsmr_src, malc_src, tmp_path):
    root = _copy(hvsmr_src, tmp_path / "hvsmr")
    mask = os.path.join(root, "masks", "training_axial_crop_pat1-label.nii.gz")
    image = os.path.join(root, "images", "training_axial_crop_pat1.nii.gz")
    label = np.asarray(nib.load(mask).dataobj).copy()
    label[0, 0, 0] = 3
    _rewrite(mask, data=label)
    with pytest.raises(
        DatasetError, match=rf"{esc(mask)}: unexpected label values \[3\]; allowed values are \[0, 1, 2\]"
    ):
        hvsmr_datalist(root)
    assert len(hvsmr_datalist(root, check_labels=False)) == 2
    # the same mask is fine for MALC's label set
    assert len(segmentation_datalist(root, allowed_labels=range(11))) == 2

    _rewrite(mask, data=label[:, :, :-2])
    with pytest.raises(
        DatasetError,
        match=rf"shape mismatch: {esc(image)} has shape \(24, 24, 20\) but {esc(mask)} has shape \(24, 24, 18\)",
    ):
        hvsmr_datalist(root)
    affine = nib.load(image).affine.copy()
    affine[:3, :3] *= 1.1
    _rewrite(mask, data=np.zeros((24, 24, 20), np.uint8), affine=affine)
    with pytest.raises(DatasetError, match=f"affine mismatch: {esc(image)} has affine .* but {esc(mask)}"):
        hvsmr_datalist(root)

    root = _copy(malc_src, tmp_path / "malc")
    mask = os.path.join(root, "masks", "1000_3.nii.gz")
    label = np.asarray(nib.load(mask).dataobj).copy()
    label[0, 0, 0] = 11
    _rewrite(mask, data=label)
    with pytest.raises(DatasetError, match=rf"{esc(mask)}: unexpected label values \[11\]"):
        malc_datalist(root)


def test_segmentation_empty_layouts(tmp_path):
    with pytest.raises(DatasetError, match=f"image folder {esc(tmp_path / 'images')} does not exist"):
        malc_datalist(str(tmp_path))
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match=f"no NIfTI images .* found in {esc(tmp_path / 'images')}"):
        hvsmr_datalist(str(tmp_path))
    with pytest.raises(DatasetError, match="does not exist"):
        hvsmr_datalist(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------- BUSI
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
    root = _copy(busi_src, tmp_path / "busi")
    mask = os.path.join(root, "malignant", "malignant (2)_mask.png")
    image = os.path.join(root, "malignant", "malignant (2).png")
    Image.new("L", (40, 48)).save(mask)
    with pytest.raises(DatasetError, match=f"size mismatch: mask {esc(mask)} is 40x48 but image {esc(image)} is 48x48"):
        busi_datalist(root)


def test_busi_unreadable_and_orphans(busi_src, tmp_path):
    root = _copy(busi_src, tmp_path / "busi")
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
    root = _copy(busi_src, tmp_path / "busi")
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
    assert items["benign (1)"]["boxes"] == [[1, 2, 30, 40], [5, 5, 10, 12], [0, 0, 48, 48]]
    assert items["malignant (1)"]["boxes"] == [[3.5, 4, 20, 22.5]]
    assert items["benign (2)"]["boxes"] == []
    items = {it["case_id"]: it for it in busi_datalist(busi_src, include_normal=True, box_file=str(box_file))}
    assert items["normal (1)"]["boxes"] == [[1, 1, 5, 5]]


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


# ------------------------------------------------------------------------------ ChestX-ray14
def _csv_rows(root):
    with open(os.path.join(root, "Data_Entry_2017.csv")) as f:
        return f.read().splitlines()


def test_chestxray14_datalist(cxr_src):
    rows = [r.split(",") for r in _csv_rows(cxr_src)[1:]]
    items = chestxray14_datalist(cxr_src)
    expected = sorted(r[0] for r in rows if r[1] in ("No Finding", "Effusion"))
    assert [it["case_id"] for it in items] == expected
    first = items[0]
    assert first == {
        "image": os.path.join(cxr_src, "images", "00000001_000.png"),
        "label": 0,
        "finding": "No Finding",
        "patient_id": "00000001",
        "case_id": "00000001_000.png",
    }
    assert {it["label"] for it in items if it["finding"] == "Effusion"} == {1}
    findings = ("Pneumothorax", "Effusion", "No Finding")
    items = chestxray14_datalist(cxr_src, findings=findings)
    assert all(findings[it["label"]] == it["finding"] for it in items)
    multi = {r[0] for r in rows if "|" in r[1]}
    assert multi and not multi & {it["case_id"] for it in items}  # multi-label rows are skipped


def test_chestxray14_nih_folders_and_odd_columns(cxr_src, tmp_path):
    root = tmp_path / "nih"
    os.makedirs(root / "images_001" / "images")
    os.makedirs(root / "images_002" / "images")
    names = sorted(os.listdir(os.path.join(cxr_src, "images")))
    for i, name in enumerate(names):
        shutil.copy(os.path.join(cxr_src, "images", name), root / f"images_00{1 + i % 2}" / "images" / name)
    # reordered and extra columns, a BOM, spaces around values, blank lines
    lines = ["\ufeffPatient ID,Extra,Image Index,Finding Labels"]
    for row in _csv_rows(cxr_src)[1:]:
        r = row.split(",")
        lines += [f" {r[3]} ,x, {r[0]} ,{r[1]} ", ""]
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = chestxray14_datalist(str(root))
    reference = chestxray14_datalist(cxr_src)
    assert [(it["case_id"], it["label"], it["patient_id"]) for it in items] == [
        (it["case_id"], it["label"], it["patient_id"]) for it in reference
    ]
    assert items[1]["image"] == str(root / "images_002" / "images" / items[1]["case_id"])


def test_chestxray14_missing_image(cxr_src, tmp_path):
    root = _copy(cxr_src, tmp_path / "cxr")
    os.remove(os.path.join(root, "images", "00000002_000.png"))
    with pytest.raises(
        DatasetError,
        match=rf"{esc(os.path.join(root, 'Data_Entry_2017.csv'))}, line \d+: image 00000002_000\.png is missing",
    ):
        chestxray14_datalist(root)


def test_chestxray14_unreadable_image(cxr_src, tmp_path):
    root = _copy(cxr_src, tmp_path / "cxr")
    path = os.path.join(root, "images", "00000001_001.png")
    with open(path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DatasetError, match=f"{esc(path)}: unreadable image file"):
        chestxray14_datalist(root)
    assert len(chestxray14_datalist(root, check_images=False)) == len(chestxray14_datalist(cxr_src))


def test_chestxray14_bad_csv(cxr_src, tmp_path):
    root = _copy(cxr_src, tmp_path / "cxr")
    csv_path = os.path.join(root, "Data_Entry_2017.csv")
    lines = _csv_rows(root)
    with open(csv_path, "w") as f:
        f.write("\n".join([lines[0].replace("Patient ID", "PatientID")] + lines[1:]))
    with pytest.raises(DatasetError, match=rf"{esc(csv_path)} lacks the column\(s\) \['Patient ID'\]"):
        chestxray14_datalist(root)
    with open(csv_path, "w") as f:
        f.write("\n".join(lines + ["00000001_000.png,No Finding"]))
    with pytest.raises(DatasetError, match=rf"{esc(csv_path)}, line {len(lines) + 1}: expected at least 4 columns"):
        chestxray14_datalist(root)
    with open(csv_path, "w") as f:
        f.write("\n".join(lines + [lines[1]]))
    with pytest.raises(DatasetError, match=rf"line {len(lines) + 1}: image 00000001_000\.png is listed twice"):
        chestxray14_datalist(root)
    with pytest.raises(DatasetError, match=rf"no single-label rows with a finding in \['Hernia'\]"):
        chestxray14_datalist(cxr_src, findings=("Hernia",))
    os.remove(csv_path)
    with pytest.raises(DatasetError, match=f"metadata file {esc(csv_path)} does not exist"):
        chestxray14_datalist(root)
    shutil.copy(os.path.join(cxr_src, "Data_Entry_2017.csv"), csv_path)
    shutil.rmtree(os.path.join(root, "images"))
    with pytest.raises(DatasetError, match=f"no PNG images found under {esc(root)}; expected <root>/images/"):
        chestxray14_datalist(root)
