from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from transforms import BratsRegionsToLabelsd
from transforms.postprocessing import (
    KeepLargestComponentPerClass,
    KeepLargestComponentPerClassd,
)


def _two_components_per_class() -> tuple[np.ndarray, np.ndarray]:
    """Label map (8, 8) with labels 1 and 2, each a big and a small component; and the expected cleaned map."""
    labels = np.zeros((8, 8), dtype=np.int64)
    labels[0:3, 0:3] = 1  # big component of class 1
    labels[6, 6] = 1  # small component of class 1
    labels[4:8, 0:2] = 2  # big component of class 2
    labels[0, 6:8] = 2  # small component of class 2
    expected = labels.copy()
    expected[6, 6] = 0
    expected[0, 6:8] = 0
    return labels, expected


def test_label_map_each_class_on_its_own():
    labels, expected = _two_components_per_class()
    out = KeepLargestComponentPerClass(layout="labels")(torch.as_tensor(labels[None]))
    np.testing.assert_array_equal(np.asarray(out[0]), expected)


def test_onehot_keeps_background_channel():
    labels, expected = _two_components_per_class()
    onehot = np.stack([labels == c for c in range(3)]).astype(np.float32)
    out = KeepLargestComponentPerClass(layout="onehot")(onehot.copy())
    np.testing.assert_array_equal(out[1:], np.stack([expected == c for c in (1, 2)]))
    np.testing.assert_array_equal(out[0], onehot[0])  # background untouched


def test_multilabel_processes_every_channel_including_the_first():
    labels, expected = _two_components_per_class()
    # overlapping regions: channel 0 = class 1, channel 1 = classes 1 or 2 (three components), channel 2 = class 2
    regions = np.stack([labels == 1, labels > 0, labels == 2]).astype(np.float32)
    out = KeepLargestComponentPerClassd("pred", layout="multilabel")({"pred": MetaTensor(regions.copy())})["pred"]
    assert isinstance(out, MetaTensor)
    np.testing.assert_array_equal(out[0].numpy(), expected == 1)  # channel 0 is a class, not background
    np.testing.assert_array_equal(out[2].numpy(), expected == 2)
    np.testing.assert_array_equal(out[1].numpy(), expected == 1)  # of the union's 4 components, the 3x3 block


def test_brats_regions_then_labels_in_a_compose():
    labels, _ = _two_components_per_class()
    et = np.zeros_like(labels, dtype=bool)
    et[1, 1] = et[7, 7] = True  # ET: two single-voxel components, the first (in scan order) is kept on a tie
    regions = np.stack([labels == 1, labels > 0, et]).astype(np.float32)  # TC, WT, ET
    post = Compose([KeepLargestComponentPerClassd("pred"), BratsRegionsToLabelsd("pred")])
    out = np.asarray(post({"pred": torch.as_tensor(regions)})["pred"])[0]
    assert out.shape == labels.shape and set(np.unique(out)) <= {0, 1, 2, 4}
    assert out[6, 6] == 0 and out[0, 7] == 0 and (out == 4).sum() == 1


@pytest.mark.parametrize(
    "kwargs, shape, match",
    [
        (dict(layout="softmax"), None, "'softmax'"),
        (dict(num_components=0), None, "num_components=0"),
        (dict(layout="labels"), (2, 4, 4), r"\(2, 4, 4\)"),
        (dict(layout="onehot"), (1, 4, 4), r"\(1, 4, 4\)"),
    ],
)
def test_errors_name_the_bad_value(kwargs, shape, match):
    with pytest.raises(ValueError, match=match):
        KeepLargestComponentPerClass(**kwargs)(torch.zeros(shape or (1, 4, 4)))
