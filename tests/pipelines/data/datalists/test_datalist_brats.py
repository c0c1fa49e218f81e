"""Tests of the BraTS datalist scanner: real layouts and every validation error."""

from __future__ import annotations

import gzip
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from datalist_helpers import copy_dataset, esc, rewrite_nifti

from pipelines.data import (
    BRATS_MODALITIES,
    DatasetError,
    brats_datalist,
    make_brats_demo,
)

CASE0 = "Brats18_DEMO_0_1"


@pytest.fixture(scope="module")
def brats_src(tmp_path_factory):
    return make_brats_demo(str(tmp_path_factory.mktemp("brats")), num_cases=3, shape=(24, 24, 20), seed=0)


@pytest.fixture
def brats(brats_src, tmp_path):
    return copy_dataset(brats_src, tmp_path / "brats")


def _case_file(root, key, case=CASE0, ext=".nii.gz") -> str:
    return os.path.join(root, case, f"{case}_{key}{ext}")


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
    rewrite_nifti(path, data=np.zeros((24, 24, 18), np.float32))
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
    rewrite_nifti(path, affine=affine)
    with pytest.raises(
        DatasetError, match=f"affine mismatch: {esc(_case_file(brats, 't1'))} has affine .* but {esc(path)} has affine"
    ):
        brats_datalist(brats)
    # differences within the tolerance are accepted
    affine[0, 3] -= 0.5 - 1e-4
    rewrite_nifti(path, affine=affine)
    assert len(brats_datalist(brats)) == 3


def test_brats_unexpected_label(brats):
    path = _case_file(brats, "seg", case="Brats18_DEMO_1_1")
    seg = np.asarray(nib.load(path).dataobj).copy()
    seg[0, 0, :2] = 3
    rewrite_nifti(path, data=seg)
    with pytest.raises(
        DatasetError, match=rf"{esc(path)}: unexpected label values \[3\]; allowed values are \[0, 1, 2, 4\]"
    ):
        brats_datalist(brats)
    assert len(brats_datalist(brats, check_labels=False)) == 3


def test_brats_float_labels(brats):
    path = _case_file(brats, "seg")
    seg = np.asarray(nib.load(path).dataobj).astype(np.float32)
    rewrite_nifti(path, data=seg)
    assert len(brats_datalist(brats)) == 3  # integral float labels are fine
    seg[0, 0, 0] = 0.5
    rewrite_nifti(path, data=seg)
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
