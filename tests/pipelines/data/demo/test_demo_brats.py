"""Tests of the BraTS demo generator (layout, determinism, learnable structure)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from demo_helpers import load_nifti
from scipy import ndimage

from pipelines.data import BRATS_MODALITIES, make_brats_demo

BRATS_SHAPE = (48, 48, 40)


def _brats_case(root: str, index: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    case = f"Brats18_DEMO_{index}_1"
    prefix = os.path.join(root, case, case)
    images = {m: load_nifti(f"{prefix}_{m}.nii.gz") for m in BRATS_MODALITIES}
    return images, load_nifti(f"{prefix}_seg.nii.gz"), nib.load(f"{prefix}_seg.nii.gz").affine


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory):
    return make_brats_demo(str(tmp_path_factory.mktemp("brats")), num_cases=4, shape=BRATS_SHAPE, seed=0)


def test_brats_layout_and_types(brats_root):
    assert sorted(os.listdir(brats_root)) == [f"Brats18_DEMO_{i}_1" for i in range(4)]
    assert sorted(os.listdir(os.path.join(brats_root, "Brats18_DEMO_2_1"))) == sorted(
        f"Brats18_DEMO_2_1_{k}.nii.gz" for k in ("t1", "t1ce", "t2", "flair", "seg")
    )
    images, seg, _ = _brats_case(brats_root, 0)
    for image in images.values():
        assert image.dtype == np.float32 and image.shape == BRATS_SHAPE
    assert seg.dtype == np.uint8 and seg.shape == BRATS_SHAPE


def test_brats_labels_and_lgg_case(brats_root):
    for index in range(4):
        images, seg, _ = _brats_case(brats_root, index)
        values = set(np.unique(seg).tolist())
        # case 3 is LGG-like: no necrotic core
        assert values == ({0, 2, 4} if index == 3 else {0, 1, 2, 4})
        brain = images["t1"] > 0
        for image in images.values():  # zero outside the brain in every modality, positive inside
            assert np.array_equal(image > 0, brain)
        assert not np.any(seg[~brain]) and not brain[0, 0, 0]


def test_brats_affines_ras_and_lps(brats_root):
    for index in range(4):
        images, seg, affine = _brats_case(brats_root, index)
        case = f"Brats18_DEMO_{index}_1"
        t1 = nib.load(os.path.join(brats_root, case, f"{case}_t1.nii.gz"))
        np.testing.assert_allclose(t1.affine, affine)
        expected = ("R", "A", "S") if index % 2 == 0 else ("L", "P", "S")
        assert nib.aff2axcodes(affine) == expected
        np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), 1.0)
        assert np.all(affine[:3, 3] != 0)
        assert t1.header.get_zooms() == (1.0, 1.0, 1.0)


def test_brats_learnable_contrasts(brats_root):
    for index in range(4):
        images, seg, _ = _brats_case(brats_root, index)
        brain = images["t1"] > 0
        normal = brain & (seg == 0)

        def mean(modality, region):
            return float(images[modality][region].mean())

        edema, enhancing, necrosis = seg == 2, seg == 4, seg == 1
        assert mean("t1ce", enhancing) > 1.4 * mean("t1ce", edema)
        assert mean("flair", edema) > 1.6 * mean("flair", normal)
        assert mean("t2", edema) > 1.6 * mean("t2", normal)
        assert mean("t1", edema | enhancing) < 0.92 * mean("t1", normal)
        if necrosis.any():
            assert mean("t1ce", necrosis) < 0.75 * mean("t1ce", edema)
            assert mean("t2", necrosis) > 1.1 * mean("t2", edema)
            assert mean("flair", necrosis) < 0.8 * mean("flair", edema)
            # the enhancing ring around the necrotic core is at least 2 voxels thick
            depth = ndimage.distance_transform_edt(seg != 0)
            core_depth = ndimage.distance_transform_edt(np.isin(seg, (1, 4)))
            assert core_depth[necrosis].min() > 2.0
            assert depth[necrosis].min() > 2.0
        # a big tumour: the whole tumour spans at least 30% of every axis
        extent = [np.ptp(ax) + 1 for ax in np.nonzero(seg)]
        assert all(e >= 0.3 * s for e, s in zip(extent, BRATS_SHAPE)), extent


def test_brats_deterministic(brats_root, tmp_path):
    same = make_brats_demo(str(tmp_path / "same"), num_cases=2, shape=BRATS_SHAPE, seed=0)
    other = make_brats_demo(str(tmp_path / "other"), num_cases=2, shape=BRATS_SHAPE, seed=1)
    for index in range(2):  # a case does not depend on how many cases are generated
        ref_images, ref_seg, ref_affine = _brats_case(brats_root, index)
        images, seg, affine = _brats_case(same, index)
        for m in BRATS_MODALITIES:
            assert images[m].tobytes() == ref_images[m].tobytes()
        assert seg.tobytes() == ref_seg.tobytes()
        np.testing.assert_array_equal(affine, ref_affine)
        other_images, other_seg, _ = _brats_case(other, index)
        assert not np.array_equal(other_seg, ref_seg)
        assert not np.array_equal(other_images["t1"], ref_images["t1"])
