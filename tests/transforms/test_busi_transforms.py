"""BUSI transforms: loading quirks, weak and partial labels, dilation, augmentation builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from PIL import Image

from pipelines.data.datalists import busi_datalist
from pipelines.data.demo import make_busi_demo
from transforms.busi import (
    BoxesToMask,
    BoxesToMaskd,
    DilateMask,
    LoadBUSId,
    MasksToBoxes,
    PartialAnnotationd,
    RandResizedCrop,
    RandResizedCropd,
    ResizeShortSide,
    ResizeShortSided,
    load_busi_image,
    partial_annotation_ids,
)
from transforms.recipes import busi_eval_transforms, busi_train_transforms


def _save(path, array, mode):
    Image.fromarray(np.ascontiguousarray(array), mode=mode).save(path)
    return str(path)


@pytest.fixture
def quirky_case(tmp_path):
    """A 6x8 image stored as RGBA and two masks: 0/255 grayscale and RGB with an alpha channel."""
    gray = (np.arange(48, dtype=np.uint8).reshape(6, 8) * 5)
    image = _save(tmp_path / "img.png", np.dstack([gray] * 3 + [np.full_like(gray, 255)]), "RGBA")
    a = np.zeros((6, 8), np.uint8)
    a[1:3, 1:3] = 255
    b = np.zeros((6, 8), np.uint8)
    b[2:5, 2:4] = 255
    mask_a = _save(tmp_path / "img_mask.png", a, "L")
    mask_b = _save(tmp_path / "img_mask_1.png", np.dstack([b, b, b, np.full_like(b, 255)]), "RGBA")
    return {"image": image, "masks": [mask_a, mask_b], "gray": gray, "expected": (a > 0) | (b > 0)}


def test_load_merges_masks_and_drops_alpha(quirky_case):
    out = LoadBUSId()(dict(image=quirky_case["image"], masks=quirky_case["masks"], label=1))
    assert out["image"].shape == (1, 6, 8) and out["image"].dtype == torch.float32
    np.testing.assert_allclose(out["image"][0].numpy(), quirky_case["gray"], atol=0.01)  # luminance of equal RGB
    assert out["mask"].shape == (1, 6, 8)
    np.testing.assert_array_equal(out["mask"][0].numpy(), quirky_case["expected"].astype(np.float32))
    assert int(out["mask"].sum()) == 4 + 6 - 1  # the two lesions overlap in one pixel
    assert out["has_mask"] == 1 and out["label"] == 1


def test_load_grayscale_rgb_and_zero_one_masks(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    layouts = [("l", gray, "L"), ("rgb", np.dstack([gray] * 3), "RGB"), ("la", np.dstack([gray, gray]), "LA")]
    for name, array, mode in layouts:
        loaded = load_busi_image(_save(tmp_path / f"{name}.png", array, mode))
        np.testing.assert_allclose(loaded[0], gray, atol=0.01)
    colour = np.zeros((5, 7, 3), np.uint8)
    colour[..., 0] = 100  # pure red -> 0.299 * 100
    np.testing.assert_allclose(load_busi_image(_save(tmp_path / "red.png", colour, "RGB"))[0], 29.9, atol=0.01)
    zero_one = np.zeros((5, 7), np.uint8)
    zero_one[2, 3] = 1
    out = LoadBUSId()({"image": str(tmp_path / "l.png"), "masks": [_save(tmp_path / "m.png", zero_one, "L")]})
    assert int(out["mask"].sum()) == 1 and out["mask"][0, 2, 3] == 1


def test_no_mask_gives_zero_mask_and_flag(tmp_path):
    image = _save(tmp_path / "normal.png", np.full((4, 4), 9, np.uint8), "L")
    for item in ({"image": image}, {"image": image, "masks": []}):
        out = LoadBUSId()(item)
        assert out["has_mask"] == 0 and out["mask"].shape == (1, 4, 4) and out["mask"].sum() == 0


def test_size_mismatch_names_both_files(tmp_path):
    image = _save(tmp_path / "a.png", np.zeros((6, 8), np.uint8), "L")
    mask = _save(tmp_path / "a_mask.png", np.zeros((6, 9), np.uint8), "L")
    with pytest.raises(ValueError, match=r"a_mask\.png is 9x6 but image .*a\.png is 8x6"):
        LoadBUSId()({"image": image, "masks": [mask]})


def test_dilation_counts_pixels():
    point = np.zeros((1, 21, 21), np.float32)
    point[0, 10, 10] = 1
    assert DilateMask(0)(point) is point
    assert DilateMask(1)(point).sum() == 5  # disk(1) is a cross
    assert DilateMask(2)(point).sum() == 13  # disk(2): 1 + 3 + 5 + 3 + 1
    square = torch.zeros(1, 21, 21)
    square[0, 5:8, 5:8] = 1
    dilated = DilateMask(1)(square)
    assert isinstance(dilated, torch.Tensor) and dilated.sum() == 9 + 4 * 3  # one row/column added on each side
    assert set(dilated.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="non-negative"):
        DilateMask(-1)


def test_boxes_from_two_components_and_back():
    mask = np.zeros((1, 10, 8), np.uint8)
    mask[0, 1:3, 2:5] = 1
    mask[0, 5:8, 0:2] = 1
    mask[0, 7, 2] = 1  # diagonal-free extension of the second component (8-connected)
    boxes = MasksToBoxes()(mask)
    # MONAI standard mode [row_min, col_min, row_max, col_max], exclusive maxima
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 5], [5, 0, 8, 3]])
    assert boxes.dtype == np.int64
    rect = BoxesToMask()(boxes, (10, 8))
    assert rect.shape == (1, 10, 8) and rect.sum() == 6 + 9
    assert rect[0, 1:3, 2:5].all() and rect[0, 5:8, 0:3].all()
    np.testing.assert_array_equal(MasksToBoxes()(rect), boxes)
    assert MasksToBoxes()(np.zeros((1, 4, 4))).shape == (0, 4)


def test_single_pixel_box_and_diagonal_components():
    mask = np.zeros((5, 6), bool)
    mask[2, 4] = True
    np.testing.assert_array_equal(MasksToBoxes()(mask), [[2, 4, 3, 5]])  # one pixel: [r, c, r + 1, c + 1]
    mask[3, 5] = True  # touches diagonally: one 8-connected component
    np.testing.assert_array_equal(MasksToBoxes()(torch.as_tensor(mask)[None]), [[2, 4, 4, 6]])
    mask[0, 0] = True  # a second component, first in raster order
    np.testing.assert_array_equal(MasksToBoxes()(mask), [[0, 0, 1, 1], [2, 4, 4, 6]])


def test_boxes_to_mask_fractional_clipped_and_invalid():
    # rows 0.5..1.2 -> 0..2 (floor / ceil), columns 0.5..1.0 -> 0..1
    np.testing.assert_array_equal(BoxesToMask()([[0.5, 0.5, 1.2, 1.0]], (3, 3))[0], [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    # clipped to the image; a box wholly outside is dropped
    np.testing.assert_array_equal(
        BoxesToMask()(torch.tensor([[-2.0, 1.0, 2.0, 9.0], [5.0, 5.0, 7.0, 7.0]]), (3, 4))[0],
        [[0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]],
    )
    assert BoxesToMask()([], (2, 5)).shape == (1, 2, 5) and not BoxesToMask()([], (2, 5)).any()
    with pytest.raises(ValueError, match="row_min, col_min, row_max, col_max"):
        BoxesToMask()([[0, 1, 2]], (3, 3))


def test_boxes_replace_mask(quirky_case):
    item = LoadBUSId()({"image": quirky_case["image"], "masks": quirky_case["masks"], "boxes": [[0, 0, 2, 3]]})
    out = BoxesToMaskd()(item)
    assert out["has_mask"] == 1 and out["mask"].sum() == 6 and out["mask"][0, :2, :3].sum() == 6
    del item["boxes"]
    out = BoxesToMaskd()(item)
    assert out["has_mask"] == 0 and out["mask"].sum() == 0


def test_resize_short_side_is_monai_resize_and_inverts():
    from monai.data import MetaTensor
    from monai.transforms import Resize

    image = torch.arange(48 * 64, dtype=torch.float32).reshape(1, 48, 64)
    resizer = ResizeShortSide(32, mode="bilinear", anti_aliasing=True)
    out = resizer(MetaTensor(image))
    assert out.shape == (1, 32, 43)  # 64 * 32 / 48 = 42.67 -> 43
    ref = Resize((32, 43), mode="bilinear", anti_aliasing=True)(image)
    torch.testing.assert_close(out.as_tensor(), torch.as_tensor(ref))
    assert ResizeShortSide(32)(torch.zeros(1, 80, 40)).shape == (1, 64, 32)  # portrait: the columns are short
    back = resizer.inverse(out)
    assert back.shape == (1, 48, 64) and len(back.applied_operations) == 0
    # the inverse is MONAI's: bilinear without anti-aliasing
    torch.testing.assert_close(back.as_tensor(), Resize((48, 64), mode="bilinear")(out.as_tensor()), atol=1e-4, rtol=0)
    resized = ResizeShortSided(("image", "mask"), 32, mode=("bilinear", "nearest-exact"))
    d = resized({"image": MetaTensor(image), "mask": MetaTensor((image > 1000).float())})
    assert d["image"].shape == d["mask"].shape == (1, 32, 43)
    assert set(d["mask"].unique().tolist()) == {0.0, 1.0}
    inv = resized.inverse(d)
    assert inv["image"].shape == inv["mask"].shape == (1, 48, 64)


def test_partial_annotation_is_deterministic():
    items = [{"case_id": f"benign ({i})", "mask": torch.ones(1, 2, 2), "has_mask": 1} for i in range(200)]
    transform = PartialAnnotationd(fraction=0.3, seed=1)
    kept = [transform(it)["has_mask"] for it in items]
    assert kept == [PartialAnnotationd(fraction=0.3, seed=1)(it)["has_mask"] for it in items]
    assert 0.2 < np.mean(kept) < 0.4
    assert all(transform(it)["mask"].sum() == (4 if k else 0) for it, k in zip(items, kept))
    ids = partial_annotation_ids(items, 0.25, seed=3)
    assert len(ids) == 50 and ids == partial_annotation_ids(items, 0.25, seed=3) != partial_annotation_ids(items, 0.25)
    exact = PartialAnnotationd(keep_ids=ids)
    assert sum(exact(it)["has_mask"] for it in items) == 50
    with pytest.raises(ValueError, match="fraction"):
        PartialAnnotationd(fraction=1.5)


def test_random_resized_crop_ranges_and_shared_geometry():
    crop = RandResizedCrop(16).set_random_state(0)
    for _ in range(50):
        crop.randomize((60, 80))
        top, left, h, w = crop._box
        assert 0.75 * 4800 * 0.95 <= h * w <= 4800 and 0.75 * 0.95 <= w / h <= 4 / 3 * 1.05
        assert 0 <= top <= 60 - h and 0 <= left <= 80 - w
    mask = torch.zeros(1, 60, 80)
    mask[0, 10:40, 20:70] = 1
    paired = RandResizedCropd(("image", "mask"), 32, mode="nearest").set_random_state(5)
    out = paired({"image": mask * 200, "mask": mask.clone()})
    assert out["image"].shape == out["mask"].shape == (1, 32, 32)
    torch.testing.assert_close(torch.as_tensor(out["image"]), torch.as_tensor(out["mask"]) * 200)


def test_train_transforms_keep_image_and_mask_aligned(tmp_path):
    mask = np.zeros((90, 120), np.uint8)
    mask[20:60, 30:80] = 255
    image = _save(tmp_path / "x.png", np.where(mask > 0, 255, 0).astype(np.uint8), "L")
    item = {"image": image, "masks": [_save(tmp_path / "x_mask.png", mask, "L")], "label": 0, "case_id": "x"}
    pipeline = busi_train_transforms(64, brightness=0, contrast=0, rotate_prob=1.0)
    for seed in range(4):
        out = pipeline.set_random_state(seed)(dict(item))
        img, msk = out["image"], out["mask"]
        assert img.shape == msk.shape == (1, 64, 64) and -1 <= img.min() and img.max() <= 1
        inside = msk > 0.5
        assert (img[inside] > 0).float().mean() > 0.95 and (img[~inside] < 0).float().mean() > 0.95
    a = busi_train_transforms(64).set_random_state(7)(dict(item))
    b = busi_train_transforms(64).set_random_state(7)(dict(item))
    torch.testing.assert_close(a["image"], b["image"])
    dilated = busi_train_transforms(64, dilate=3, brightness=0, contrast=0).set_random_state(1)(dict(item))
    plain = busi_train_transforms(64, brightness=0, contrast=0).set_random_state(1)(dict(item))
    assert dilated["mask"].sum() > plain["mask"].sum()


def test_eval_transforms_resize_short_side_and_centre_crop(tmp_path):
    gray = np.tile(np.linspace(0, 255, 150).astype(np.uint8), (100, 1))  # left dark, right bright
    item = {"image": _save(tmp_path / "g.png", gray, "L"), "masks": [], "case_id": "g"}
    out = busi_eval_transforms(32)(item)
    assert out["image"].shape == out["mask"].shape == (1, 32, 32) and out["has_mask"] == 0
    assert "masks" not in out
    # 100x150 -> 32x48 -> central 32 columns: values from about 8/48 to 40/48 of the ramp
    row = out["image"][0, 16]
    assert -0.8 < row[0].item() < -0.5 and 0.5 < row[-1].item() < 0.8


def test_demo_dataset_collates(tmp_path):
    root = make_busi_demo(str(tmp_path / "busi"), num_per_class=2, size=64, include_normal=False)
    items = busi_datalist(root)
    for transform in (busi_train_transforms(32, dilate=1), busi_eval_transforms(32)):
        batch = next(iter(DataLoader(Dataset(items, transform), batch_size=4, num_workers=0)))
        assert batch["image"].shape == (4, 1, 32, 32) and batch["mask"].shape == (4, 1, 32, 32)
        assert batch["has_mask"].tolist() == [1, 1, 1, 1] and batch["label"].shape == (4,)
