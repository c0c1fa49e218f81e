"""Tests of the BUSI demo generator (file names and quirks, masks, learnable structure, determinism)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from demo_helpers import gray
from PIL import Image
from scipy import ndimage
from skimage.measure import regionprops

from pipelines.data import make_busi_demo


@pytest.fixture(scope="module")
def busi_root(tmp_path_factory):
    return make_busi_demo(str(tmp_path_factory.mktemp("busi")), num_per_class=8, size=96, seed=0)


def test_busi_file_names_and_quirks(busi_root):
    assert sorted(os.listdir(busi_root)) == ["benign", "malignant", "normal"]
    for cls in ("benign", "malignant", "normal"):
        names = set(os.listdir(os.path.join(busi_root, cls)))
        for n in range(1, 9):
            assert f"{cls} ({n}).png" in names and f"{cls} ({n})_mask.png" in names
            assert (f"{cls} ({n})_mask_1.png" in names) == (cls != "normal" and n % 4 == 0)
        assert len(names) == 16 + (0 if cls == "normal" else 2)
    modes = {n: Image.open(os.path.join(busi_root, "benign", f"benign ({n}).png")).mode for n in range(1, 6)}
    assert modes == {1: "L", 2: "RGB", 3: "RGBA", 4: "L", 5: "RGB"}
    rgb = np.asarray(Image.open(os.path.join(busi_root, "benign", "benign (2).png")))
    assert (
        rgb.shape == (96, 96, 3)
        and np.array_equal(rgb[..., 0], rgb[..., 1])
        and np.array_equal(rgb[..., 0], rgb[..., 2])
    )
    rgba = np.asarray(Image.open(os.path.join(busi_root, "benign", "benign (3).png")))
    assert rgba.shape == (96, 96, 4) and np.all(rgba[..., 3] == 255)
    assert np.array_equal(gray(os.path.join(busi_root, "benign", "benign (3).png")), rgba[..., 0])


def test_busi_masks(busi_root):
    for cls in ("benign", "malignant"):
        for n in range(1, 9):
            with Image.open(os.path.join(busi_root, cls, f"{cls} ({n})_mask.png")) as img:
                assert img.mode == "L" and img.size == (96, 96)
                mask = np.asarray(img)
            assert set(np.unique(mask).tolist()) == {0, 255}
        second = gray(os.path.join(busi_root, cls, f"{cls} (4)_mask_1.png"))
        first = gray(os.path.join(busi_root, cls, f"{cls} (4)_mask.png"))
        assert 0 < (second > 0).sum() < (first > 0).sum() and not np.any((first > 0) & (second > 0))
    for n in range(1, 9):
        assert not gray(os.path.join(busi_root, "normal", f"normal ({n})_mask.png")).any()


def test_busi_learnable_structure(busi_root):
    solidity, aspect = {"benign": [], "malignant": []}, {"benign": [], "malignant": []}
    for cls in solidity:
        for n in range(1, 9):
            mask = gray(os.path.join(busi_root, cls, f"{cls} ({n})_mask.png")) > 0
            image = gray(os.path.join(busi_root, cls, f"{cls} ({n}).png")).astype(float)
            ring = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
            assert image[mask].mean() < 0.6 * image[ring].mean()  # hypoechoic lesion
            props = regionprops(mask.astype(int))[0]
            solidity[cls].append(props.solidity)
            rows, cols = np.nonzero(mask)
            aspect[cls].append(rows.std() / cols.std())  # height / width, insensitive to thin spicules
    assert np.mean(solidity["malignant"]) < np.mean(solidity["benign"]) - 0.1
    assert min(aspect["malignant"]) > 1.0 > max(aspect["benign"])  # taller-than-wide vs oval


def test_busi_deterministic_and_without_normal(busi_root, tmp_path):
    root = make_busi_demo(str(tmp_path / "busi"), num_per_class=4, size=96, seed=0, include_normal=False)
    assert sorted(os.listdir(root)) == ["benign", "malignant"]
    for name in ("benign (1).png", "benign (4)_mask_1.png"):
        assert np.array_equal(gray(os.path.join(root, "benign", name)), gray(os.path.join(busi_root, "benign", name)))
    other = make_busi_demo(str(tmp_path / "other"), num_per_class=1, size=96, seed=5)
    assert not np.array_equal(
        gray(os.path.join(other, "benign", "benign (1).png")),
        gray(os.path.join(busi_root, "benign", "benign (1).png")),
    )
