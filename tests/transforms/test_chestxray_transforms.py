"""Lung box, box scaling and class regions of the chest X-ray classifier (hand-computed)."""

import numpy as np
import pytest
import torch

from transforms.chestxray import (
    CXR_TASKS,
    ClassRegiond,
    class_folder,
    class_region_mask,
    finding_from_folder,
    lung_box_from_mask,
    scale_box,
)


def test_tasks_and_folders():
    assert CXR_TASKS["ne"] == ("No Finding", "Effusion")
    assert CXR_TASKS["neps"][-1] == "Subcutaneous Emphysema"
    assert all(classes[0] == "No Finding" for classes in CXR_TASKS.values())
    assert class_folder("Subcutaneous Emphysema") == "Subcutaneous_Emphysema"
    assert class_folder("No Finding") == "No_Finding"
    for finding in CXR_TASKS["neps"]:
        assert finding_from_folder(class_folder(finding)) == finding


def test_lung_box_is_the_union_of_both_lungs():
    mask = np.zeros((10, 12), np.uint8)
    mask[2:7, 1:4] = 1  # image-left lung
    mask[3:9, 7:11] = 1  # image-right lung
    np.testing.assert_array_equal(lung_box_from_mask(mask), [2, 1, 9, 11])
    # probabilities thresholded; a channel dimension and tensors accepted
    prob = torch.zeros(1, 10, 12)
    prob[0, 4, 5] = 0.6
    prob[0, 0, 0] = 0.4
    np.testing.assert_array_equal(lung_box_from_mask(prob), [4, 5, 5, 6])
    assert lung_box_from_mask(prob, threshold=0.3).tolist() == [0, 0, 5, 6]


def test_no_lung_gives_the_whole_image():
    assert lung_box_from_mask(np.zeros((7, 5))).tolist() == [0, 0, 7, 5]
    with pytest.raises(ValueError, match="2D"):
        lung_box_from_mask(np.zeros((2, 3, 4)))


def test_scale_box():
    np.testing.assert_allclose(scale_box([100, 200, 612, 824], (1024, 1024), (224, 224)),
                               [21.875, 43.75, 133.875, 180.25])
    np.testing.assert_allclose(scale_box([0, 0, 10, 20], (10, 20), (5, 5)), [0, 0, 5, 5])
    with pytest.raises(ValueError):
        scale_box([0, 0, 1, 1], (0, 3), (4, 4))


def test_effusion_and_pneumothorax_halves():
    box = [2, 1, 8, 5]  # rows 2..7, cols 1..4, middle row boundary at 5
    eff = class_region_mask(box, "Effusion", (10, 6))
    ptx = class_region_mask(box, "Pneumothorax", (10, 6))
    expected_eff = np.zeros((10, 6), bool)
    expected_eff[5:8, 1:5] = True
    expected_ptx = np.zeros((10, 6), bool)
    expected_ptx[2:5, 1:5] = True
    np.testing.assert_array_equal(eff, expected_eff)
    np.testing.assert_array_equal(ptx, expected_ptx)
    # odd height: rows 2..6, middle at 4.5 -> row 4 (centre 4.5) is in neither half
    eff = class_region_mask([2, 1, 7, 5], "Effusion", (10, 6))
    ptx = class_region_mask([2, 1, 7, 5], "Pneumothorax", (10, 6))
    assert eff[:, 2].nonzero()[0].tolist() == [5, 6]
    assert ptx[:, 2].nonzero()[0].tolist() == [2, 3]
    assert not (eff & ptx).any()


def test_subcutaneous_emphysema_is_outside_the_lungs_above_the_box_bottom():
    box = [3, 2, 7, 6]
    region = class_region_mask(box, "Subcutaneous Emphysema", (9, 8))
    expected = np.zeros((9, 8), bool)
    expected[:3, :] = True  # above the box
    expected[3:7, :2] = True  # left margin down to the box bottom
    expected[3:7, 6:] = True  # right margin
    np.testing.assert_array_equal(region, expected)
    assert region.sum() == 3 * 8 + 4 * 2 + 4 * 2


def test_no_finding_has_no_region_and_errors():
    assert not class_region_mask([0, 0, 4, 4], "No Finding", 4).any()
    with pytest.raises(ValueError, match="unknown finding"):
        class_region_mask([0, 0, 4, 4], "Atelectasis", 4)
    with pytest.raises(ValueError, match="no area"):
        class_region_mask([2, 2, 2, 4], "Effusion", 4)


def test_fractional_box_uses_pixel_centres():
    # a box scaled from 1024 px to 8 px: rows 1.25..6.75 -> centres 1.5..6.5 are inside; middle 4.0
    region = class_region_mask([1.25, 0.0, 6.75, 8.0], "Effusion", 8)
    assert region[:, 0].nonzero()[0].tolist() == [4, 5, 6]


def test_class_regiond():
    item = {"image": torch.zeros(1, 10, 6), "label": torch.tensor(1), "lung_box": np.array([2, 1, 8, 5])}
    out = ClassRegiond("region", class_names=CXR_TASKS["nep"])(item)
    assert out["region"].shape == (1, 10, 6) and out["region"].dtype == torch.float32
    assert out["region"].sum() == 12 and out["region"][0, 5:8, 1:5].all()
    out = ClassRegiond("region", class_names=CXR_TASKS["nep"], spatial_size=(10, 6))({**item, "label": 2})
    assert out["region"][0, 2:5, 1:5].all() and out["region"].sum() == 12
    assert ClassRegiond("region", CXR_TASKS["ne"])({**item, "label": 0})["region"].sum() == 0
    with pytest.raises(ValueError, match="class index"):
        ClassRegiond("region", CXR_TASKS["ne"])({**item, "label": 3})
