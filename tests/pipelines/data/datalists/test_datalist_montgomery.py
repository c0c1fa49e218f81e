"""montgomery_datalist: the Montgomery County layout and the plain images/ + masks/ layout, and every bad-input error."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines.data import DatasetError, make_montgomery_demo, montgomery_datalist


def _png(path, array, mode="L"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array), mode=mode).save(path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_montgomery_demo(str(tmp_path_factory.mktemp("mcu")), num_cases=4, size=48)


def _copy(demo, tmp_path) -> str:
    root = str(tmp_path / "mcu")
    shutil.copytree(demo, root)
    return root


def _plain(tmp_path, names=("a", "b")) -> str:
    root = tmp_path / "plain"
    for i, name in enumerate(names):
        image = np.full((20, 30), 40 + i, np.uint8)
        mask = np.zeros((20, 30), np.uint8)
        mask[5:15, 3 + i : 12] = 1
        _png(str(root / "images" / f"{name}.png"), image)
        _png(str(root / "masks" / f"{name}.png"), mask)
    return str(root)


def test_montgomery_layout_lists_both_lung_masks(demo):
    items = montgomery_datalist(demo)
    assert [item["case_id"] for item in items] == ["MCUCXR_0001_0", "MCUCXR_0002_0", "MCUCXR_0003_1", "MCUCXR_0004_0"]
    first = items[0]
    assert first["image"] == os.path.join(demo, "CXR_png", "MCUCXR_0001_0.png")
    assert first["label"] == [os.path.join(demo, "ManualMask", side, "MCUCXR_0001_0.png")
                              for side in ("leftMask", "rightMask")]
    assert set(first) == {"image", "label", "case_id"}


def test_the_download_folder_above_the_set_is_accepted(demo, tmp_path):
    shutil.copytree(demo, tmp_path / "MontgomerySet")
    items = montgomery_datalist(str(tmp_path))
    assert len(items) == 4 and items[0]["image"].startswith(str(tmp_path / "MontgomerySet" / "CXR_png"))


def test_plain_layout_one_mask_per_image(tmp_path):
    root = _plain(tmp_path)
    items = montgomery_datalist(root)
    assert items == [
        {"image": os.path.join(root, "images", f"{n}.png"), "label": [os.path.join(root, "masks", f"{n}.png")],
         "case_id": n} for n in ("a", "b")
    ]


def test_masks_of_0_255_and_0_1_are_binary_others_are_not(tmp_path):
    root = _plain(tmp_path)
    _png(os.path.join(root, "masks", "b.png"), np.where(np.eye(20, 30) > 0, 255, 0).astype(np.uint8))
    assert len(montgomery_datalist(root)) == 2
    _png(os.path.join(root, "masks", "b.png"), np.where(np.eye(20, 30) > 0, 128, 0).astype(np.uint8))
    with pytest.raises(DatasetError, match=r"b\.png: mask values \[0, 128\] are not binary"):
        montgomery_datalist(root)
    # the value check decodes the masks: check=False reads the headers only
    assert len(montgomery_datalist(root, check=False)) == 2


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        montgomery_datalist(str(tmp_path / "none"))
    os.makedirs(tmp_path / "other")
    with pytest.raises(DatasetError, match="neither a CXR_png/ nor an images/ folder"):
        montgomery_datalist(str(tmp_path / "other"))


def test_image_with_one_lung_mask_only(demo, tmp_path):
    root = _copy(demo, tmp_path)
    os.remove(os.path.join(root, "ManualMask", "rightMask", "MCUCXR_0002_0.png"))
    with pytest.raises(DatasetError, match=r"MCUCXR_0002_0\.png has no lung mask .*rightMask.*both lungs"):
        montgomery_datalist(root)


def test_missing_mask_folder_and_mask_without_image(demo, tmp_path):
    root = _copy(demo, tmp_path)
    os.remove(os.path.join(root, "CXR_png", "MCUCXR_0003_1.png"))
    with pytest.raises(DatasetError, match=r"leftMask.MCUCXR_0003_1\.png has no image"):
        montgomery_datalist(root)
    shutil.rmtree(os.path.join(root, "ManualMask", "leftMask"))
    with pytest.raises(DatasetError, match=r"mask folder .*leftMask does not exist"):
        montgomery_datalist(root)


def test_plain_image_without_mask(tmp_path):
    root = _plain(tmp_path)
    os.remove(os.path.join(root, "masks", "a.png"))
    with pytest.raises(DatasetError, match=r"a\.png has no mask: expected .*masks.a\.png"):
        montgomery_datalist(root)


def test_size_mismatch_names_both_files(demo, tmp_path):
    root = _copy(demo, tmp_path)
    _png(os.path.join(root, "ManualMask", "leftMask", "MCUCXR_0004_0.png"), np.zeros((48, 40), np.uint8))
    with pytest.raises(DatasetError, match=r"size mismatch: mask .*MCUCXR_0004_0\.png is 40x48 but image "
                                           r".*CXR_png.MCUCXR_0004_0\.png is 59x48"):
        montgomery_datalist(root)


def test_unreadable_and_truncated_files(tmp_path):
    root = _plain(tmp_path)
    with open(os.path.join(root, "images", "a.png"), "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DatasetError, match=r"a\.png: unreadable image file"):
        montgomery_datalist(root, check=False)
    root = _plain(tmp_path / "second")
    path = os.path.join(root, "masks", "b.png")
    data = open(path, "rb").read()
    with open(path, "wb") as f:  # the header survives, the pixel data does not
        f.write(data[: len(data) // 2])
    assert len(montgomery_datalist(root, check=False)) == 2
    with pytest.raises(DatasetError, match=r"b\.png: unreadable image file"):
        montgomery_datalist(root)


def test_empty_dataset(tmp_path):
    os.makedirs(tmp_path / "images")
    os.makedirs(tmp_path / "masks")
    with pytest.raises(DatasetError, match="no PNG images found in .*images"):
        montgomery_datalist(str(tmp_path))
