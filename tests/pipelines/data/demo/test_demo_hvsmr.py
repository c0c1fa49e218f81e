"""Tests of the HVSMR demo generator (layout, labels, intensities, seeds)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from demo_helpers import load_nifti
from scipy import ndimage

from pipelines.data import make_hvsmr_demo


def test_hvsmr_layout_labels_and_intensities(tmp_path):
    root = make_hvsmr_demo(str(tmp_path / "hvsmr"), num_cases=2, shape=(40, 40, 32), seed=0)
    assert sorted(os.listdir(os.path.join(root, "images"))) == [f"training_axial_crop_pat{i}.nii.gz" for i in range(2)]
    assert sorted(os.listdir(os.path.join(root, "masks"))) == [
        f"training_axial_crop_pat{i}-label.nii.gz" for i in range(2)
    ]
    for i in range(2):
        img = nib.load(os.path.join(root, "images", f"training_axial_crop_pat{i}.nii.gz"))
        image = np.asarray(img.dataobj)
        label = load_nifti(os.path.join(root, "masks", f"training_axial_crop_pat{i}-label.nii.gz"))
        assert set(np.unique(label).tolist()) == {0, 1, 2}
        spacing = np.linalg.norm(img.affine[:3, :3], axis=0)
        assert np.all((spacing > 0.8) & (spacing < 1.2))
        blood, myo = image[label == 2].mean(), image[label == 1].mean()
        near = ndimage.binary_dilation(label > 0, iterations=3) & (label == 0)
        assert blood > 1.5 * myo and myo > 1.3 * image[near].mean()
        # the myocardium is a thin shell (<= 3 mm) around the blood pool
        assert ndimage.distance_transform_edt(label != 2, sampling=spacing)[label == 1].max() <= 3.0
    other = make_hvsmr_demo(str(tmp_path / "other"), num_cases=1, shape=(40, 40, 32), seed=1)
    assert not np.array_equal(
        load_nifti(os.path.join(other, "masks", "training_axial_crop_pat0-label.nii.gz")),
        load_nifti(os.path.join(root, "masks", "training_axial_crop_pat0-label.nii.gz")),
    )
