"""make_montgomery_demo: the Montgomery layout, portrait and landscape images, each lung in the mask of its side."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pipelines.data import (
    DEMO_DATASETS,
    ensure_demo_dataset,
    make_montgomery_demo,
    montgomery_datalist,
)


def _read(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "L"
        return np.asarray(img)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_montgomery_demo(str(tmp_path_factory.mktemp("mcu")), num_cases=8, size=64)


def test_layout_names_and_shapes(demo):
    names = sorted(os.listdir(os.path.join(demo, "CXR_png")))
    # every third case abnormal (_1), as the real ids
    assert names == [f"MCUCXR_{n:04d}_{int(n % 3 == 0)}.png" for n in range(1, 9)]
    for side in ("leftMask", "rightMask"):
        assert sorted(os.listdir(os.path.join(demo, "ManualMask", side))) == names
    for n, name in enumerate(names, start=1):
        shape = _read(os.path.join(demo, "CXR_png", name)).shape
        # portrait: round(0.82 * 64) = 52 columns; landscape (every fourth): round(64 / 0.82) = 78
        assert shape == ((64, 78) if n % 4 == 0 else (64, 52))
    assert len(montgomery_datalist(demo)) == 8


def test_masks_are_0_255_and_each_lung_lies_on_its_side(demo):
    for item in montgomery_datalist(demo):
        left, right = (_read(p) for p in item["label"])
        width = left.shape[1]
        for mask in (left, right):
            assert set(np.unique(mask).tolist()) == {0, 255}
        assert not (left & right).any()
        # the patient's left lung is on the image's right side, the patient's right lung on its left side
        assert np.nonzero(left)[1].min() >= width / 2 - 1
        assert np.nonzero(right)[1].max() <= width / 2
        # both lungs cover a plausible share of the image
        assert 0.15 < ((left > 0) | (right > 0)).mean() < 0.5


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = make_montgomery_demo(str(tmp_path / "a"), num_cases=2, size=48, seed=3)
    b = make_montgomery_demo(str(tmp_path / "b"), num_cases=3, size=48, seed=3)
    c = make_montgomery_demo(str(tmp_path / "c"), num_cases=2, size=48, seed=4)
    for rel in ("CXR_png/MCUCXR_0002_0.png", "ManualMask/leftMask/MCUCXR_0002_0.png"):
        np.testing.assert_array_equal(_read(os.path.join(a, rel)), _read(os.path.join(b, rel)))
    assert not np.array_equal(_read(os.path.join(a, "CXR_png/MCUCXR_0001_0.png")),
                              _read(os.path.join(c, "CXR_png/MCUCXR_0001_0.png")))


def test_registered_in_the_demo_cache(tmp_path):
    assert DEMO_DATASETS["montgomery"] is make_montgomery_demo
    root = ensure_demo_dataset("montgomery", root=str(tmp_path / "cache"), num_cases=2, size=40)
    assert len(montgomery_datalist(root)) == 2


@pytest.mark.parametrize("kwargs", [{"num_cases": 0}, {"size": 16}, {"seed": -1}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_montgomery_demo(str(tmp_path), **kwargs)
