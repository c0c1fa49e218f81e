"""Tests of the MALC demo generator (layout, labels, intensities, determinism)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from demo_helpers import load_nifti

from pipelines.data import make_malc_demo


def test_malc_layout_labels_and_intensities(tmp_path):
    root = make_malc_demo(str(tmp_path / "malc"), num_cases=2, shape=(40, 48, 40), seed=3)
    assert sorted(os.listdir(os.path.join(root, "images"))) == ["1000_3.nii.gz", "1001_3.nii.gz"]
    assert sorted(os.listdir(os.path.join(root, "masks"))) == ["1000_3.nii.gz", "1001_3.nii.gz"]
    for name in ("1000_3.nii.gz", "1001_3.nii.gz"):
        img, lab = nib.load(os.path.join(root, "images", name)), nib.load(os.path.join(root, "masks", name))
        image, label = np.asarray(img.dataobj), np.asarray(lab.dataobj)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) == set(range(11))
        np.testing.assert_allclose(img.affine, lab.affine)
        np.testing.assert_allclose(np.linalg.norm(img.affine[:3, :3], axis=0), 1.0, atol=1e-6)  # 1 mm
        counts = np.bincount(label.ravel(), minlength=11)
        assert counts[1:].min() >= 20
        # every structure has its own mean intensity, well apart from the others
        means = np.sort([image[label == k].mean() for k in range(1, 11)])
        assert np.diff(means).min() > 0.02 * (means[-1] - means[0])
    again = make_malc_demo(str(tmp_path / "again"), num_cases=1, shape=(40, 48, 40), seed=3)
    assert (
        load_nifti(os.path.join(again, "images", "1000_3.nii.gz")).tobytes()
        == load_nifti(os.path.join(root, "images", "1000_3.nii.gz")).tobytes()
    )
