from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from transforms import (
    BRATS_REGIONS,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    regions_from_labels,
)


def _random_labels(seed: int = 0, shape=(6, 7, 5)) -> np.ndarray:
    return np.random.default_rng(seed).choice([0, 1, 2, 4], size=shape)


def test_round_trip_with_monai_region_conversion():
    labels = _random_labels()
    regions = ConvertToMultiChannelBasedOnBratsClasses()(labels[None])  # (3, ...) TC, WT, ET
    assert regions.shape[0] == len(BRATS_REGIONS)
    np.testing.assert_array_equal(np.asarray(regions), regions_from_labels(labels))
    back = BratsRegionsToLabels()(torch.as_tensor(np.asarray(regions), dtype=torch.float32))
    assert back.shape == (1, *labels.shape) and back.dtype == torch.uint8
    np.testing.assert_array_equal(back[0].numpy(), labels)


def test_precedence_for_inconsistent_regions():
    # voxel 0: only ET -> 4; voxel 1: TC without WT -> 1; voxel 2: WT only -> 2; voxel 3: nothing -> 0
    regions = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]], dtype=np.float32)
    out = BratsRegionsToLabels()(regions)
    assert isinstance(out, np.ndarray)
    assert out.tolist() == [[4, 1, 2, 0]]


def test_threshold_applies_to_probabilities():
    probs = torch.tensor([[0.2, 0.7], [0.9, 0.9], [0.4, 0.6]])
    assert BratsRegionsToLabels(threshold=0.5)(probs).tolist() == [[2, 4]]
    assert BratsRegionsToLabels(threshold=0.8)(probs).tolist() == [[2, 2]]


def test_keeps_meta_and_dict_wrapper():
    affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    img = MetaTensor(torch.as_tensor(regions_from_labels(_random_labels(1)), dtype=torch.float32), affine=affine)
    out = BratsRegionsToLabelsd(keys="pred")({"pred": img, "other": 1})
    assert isinstance(out["pred"], MetaTensor)
    torch.testing.assert_close(out["pred"].affine, affine.double())
    assert out["other"] == 1


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"3 region channels .* got shape \(2, 4\)"):
        BratsRegionsToLabels()(np.zeros((2, 4)))
