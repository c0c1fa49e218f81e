"""Tests of the images/ + masks/ datalist scanners (MALC, HVSMR): pairing and every validation error."""

from __future__ import annotations

import gzip
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from datalist_helpers import copy_dataset, esc, rewrite_nifti

from pipelines.data import (
    DatasetError,
    brats_datalist,
    hvsmr_datalist,
    image_folder_datalist,
    make_brats_demo,
    make_hvsmr_demo,
    make_malc_demo,
    malc_datalist,
    segmentation_datalist,
)


@pytest.fixture(scope="module")
def malc_src(tmp_path_factory):
    return make_malc_demo(str(tmp_path_factory.mktemp("malc")), num_cases=2, shape=(24, 28, 24), seed=0)


@pytest.fixture(scope="module")
def hvsmr_src(tmp_path_factory):
    return make_hvsmr_demo(str(tmp_path_factory.mktemp("hvsmr")), num_cases=2, shape=(24, 24, 20), seed=0)


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
    root = copy_dataset(malc_src, tmp_path / "malc")
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
    root = copy_dataset(malc_src, tmp_path / "malc")
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
    root = copy_dataset(hvsmr_src, tmp_path / "hvsmr")
    mask = os.path.join(root, "masks", "training_axial_crop_pat1-label.nii.gz")
    image = os.path.join(root, "images", "training_axial_crop_pat1.nii.gz")
    label = np.asarray(nib.load(mask).dataobj).copy()
    label[0, 0, 0] = 3
    rewrite_nifti(mask, data=label)
    with pytest.raises(
        DatasetError, match=rf"{esc(mask)}: unexpected label values \[3\]; allowed values are \[0, 1, 2\]"
    ):
        hvsmr_datalist(root)
    assert len(hvsmr_datalist(root, check_labels=False)) == 2
    # the same mask is fine for MALC's label set
    assert len(segmentation_datalist(root, allowed_labels=range(11))) == 2

    rewrite_nifti(mask, data=label[:, :, :-2])
    with pytest.raises(
        DatasetError,
        match=rf"shape mismatch: {esc(image)} has shape \(24, 24, 20\) but {esc(mask)} has shape \(24, 24, 18\)",
    ):
        hvsmr_datalist(root)
    affine = nib.load(image).affine.copy()
    affine[:3, :3] *= 1.1
    rewrite_nifti(mask, data=np.zeros((24, 24, 20), np.uint8), affine=affine)
    with pytest.raises(DatasetError, match=f"affine mismatch: {esc(image)} has affine .* but {esc(mask)}"):
        hvsmr_datalist(root)

    root = copy_dataset(malc_src, tmp_path / "malc")
    mask = os.path.join(root, "masks", "1000_3.nii.gz")
    label = np.asarray(nib.load(mask).dataobj).copy()
    label[0, 0, 0] = 11
    rewrite_nifti(mask, data=label)
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


def test_inference_inputs_plain_folder_or_dataset_root(malc_src, tmp_path):
    """MALC / HVSMR inference: a folder of volumes, or a dataset root whose images/ are read (masks/ ignored)."""
    expected = [{"image": os.path.join(malc_src, "images", f"{c}.nii.gz"), "case_id": c} for c in ("1000_3", "1001_3")]
    assert image_folder_datalist(malc_src) == expected
    assert image_folder_datalist(os.path.join(malc_src, "images")) == expected
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(os.path.join(malc_src, "images", "1001_3.nii.gz"), flat / "new.nii.gz")
    assert image_folder_datalist(str(flat)) == [{"image": str(flat / "new.nii.gz"), "case_id": "new"}]
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no NIfTI images"):
        image_folder_datalist(str(tmp_path / "empty"))


def test_brats_inference_inputs_plain_folder_of_cases(tmp_path):
    """BraTS inference: the dataset root (case folders), one case folder, or the cases' files side by side."""
    root = make_brats_demo(str(tmp_path / "brats"), num_cases=2, shape=(16, 16, 16), seed=0)
    by_root = brats_datalist(root, require_label=False, check_labels=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    for item in by_root:
        for path in item["image"]:  # the four modalities, no segmentation
            shutil.copy(path, flat / os.path.basename(path))
    items = brats_datalist(str(flat), require_label=False)
    assert [it["case_id"] for it in items] == [it["case_id"] for it in by_root]
    for got, ref in zip(items, by_root):
        assert got["image"] == [str(flat / os.path.basename(p)) for p in ref["image"]]  # t1, t1ce, t2, flair order
        assert "label" not in got
    one_case = os.path.dirname(by_root[0]["image"][0])
    assert [it["case_id"] for it in brats_datalist(one_case)] == [by_root[0]["case_id"]]
    os.remove(flat / os.path.basename(by_root[1]["image"][1]))  # a case without its t1ce
    with pytest.raises(DatasetError, match=f"case {by_root[1]['case_id']} is missing its t1ce"):
        brats_datalist(str(flat), require_label=False)
