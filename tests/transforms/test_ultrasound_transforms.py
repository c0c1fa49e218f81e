"""Ultrasound frame transforms (:mod:`transforms.ultrasound`) and the detection recipes of :mod:`transforms.recipes`:
the scanner-frame crop on a synthetic screen capture with a burnt-in GUI, its fall-backs and inverse, CLAHE, boxes
that stay on a bright rectangle through every geometric transform, and the round trip of boxes to the frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.apps.detection.transforms.dictionary import RandFlipBoxd
from monai.data import MetaTensor
from monai.transforms import Compose
from PIL import Image

from transforms.io import LoadFramed
from transforms.recipes import (
    boxes_to_original,
    detection_eval_transforms,
    detection_image_transforms,
    detection_train_transforms,
)
from transforms.ultrasound import (
    CLAHE,
    CLAHEd,
    RandAffineBoxd,
    ResizeBoxd,
    ScannerFrameCrop,
    ScannerFrameCropd,
    scanner_frame_bounds,
)

H, W = 60, 80
AREA = (10, 12, 50, 64)  # the scanner image area of _frame: rows 10..49, columns 12..63
TARGET = (38, 50, 44, 58)  # a bright rectangle inside it


def _frame(seed: int = 0) -> np.ndarray:
    """A 60 x 80 screen capture: speckle image area ``AREA`` (values 30..200) with a black lesion crossing the centre
    row and column and a white rectangle ``TARGET``; around it GUI: a text row right below the image (no gap, 5 of
    80 pixels on), dense text rows at the top and bottom, a colour bar on the right behind a black gap."""
    rng = np.random.default_rng(seed)
    f = np.zeros((H, W), np.float32)
    r0, c0, r1, c1 = AREA
    f[r0:r1, c0:c1] = rng.integers(30, 200, (r1 - r0, c1 - c0))
    f[25:35, 30:45] = 0  # an anechoic lesion: the centre row 30 and column 40 cross it
    f[TARGET[0]:TARGET[2], TARGET[1]:TARGET[3]] = 255
    f[50, 14:24:2] = 255  # sparse text touching the image area
    f[1:3, 4:70] = 220  # dense text rows at the top, behind black rows
    f[56:58, 0:W:3] = 180
    f[15:45, 70:74] = 200  # colour bar
    return f


def _box_of(image, threshold: float) -> list[int]:
    """Pixel box ``[r0, c0, r1, c1]`` of ``image[0] > threshold``."""
    on = np.asarray(image)[0] > threshold
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


# --------------------------------------------------------------------------------------------
# scanner-frame bounds and crop
# --------------------------------------------------------------------------------------------
def test_bounds_cut_the_gui_and_keep_going_through_a_dark_lesion():
    frame = _frame()
    assert (frame[H // 2, 30:45] == 0).all() and (frame[25:35, W // 2] == 0).all()  # the centre lines hit the lesion
    assert scanner_frame_bounds(frame) == AREA
    assert scanner_frame_bounds(frame[None]) == AREA  # channel-first
    assert scanner_frame_bounds(torch.from_numpy(frame)) == AREA
    # the text row below the image has 5 of 80 pixels on: kept when the threshold fraction is below 5 / 80
    assert scanner_frame_bounds(frame, min_fraction=0.05)[2] == 51
    # a threshold above the speckle's minimum makes the image area patchy but still found by counts
    assert scanner_frame_bounds(frame, threshold=40) == AREA


@pytest.mark.parametrize(
    "name,frame",
    [
        ("black", np.zeros((H, W), np.float32)),
        ("white", np.full((H, W), 255.0, np.float32)),
        ("dark_speck", np.pad(np.full((4, 4), 90.0, np.float32), ((28, 28), (38, 38)))),  # crop 4 x 4: too small
        ("dark_band", np.where(np.arange(H)[:, None] // 10 == 3, 0.0, 120.0) * np.ones((1, W), np.float32)),
    ],
)
def test_mostly_black_or_blank_frames_fall_back_to_the_whole_frame(name, frame):
    assert scanner_frame_bounds(frame) == (0, 0, H, W)
    out = ScannerFrameCropd("image")({"image": MetaTensor(torch.from_numpy(frame)[None])})
    assert out["image"].shape == (1, H, W) and out["crop_box"].tolist() == [0.0, 0.0, H, W]


def test_min_fraction_zero_is_the_whole_frame_and_bad_fractions_raise():
    assert scanner_frame_bounds(_frame(), min_fraction=0.0) == (0, 0, H, W)
    with pytest.raises(ValueError, match="min_fraction"):
        scanner_frame_bounds(_frame(), min_fraction=1.5)
    with pytest.raises(ValueError, match="shape"):
        scanner_frame_bounds(np.zeros((2, 3, 4, 5)))


def test_crop_keeps_boxes_on_the_anatomy_and_drops_boxes_left_empty():
    frame = _frame()
    boxes = [list(TARGET), [45, 60, 55, 70], [0, 0, 5, 5]]  # inside / across the edge / in the GUI only
    data = {"image": MetaTensor(torch.from_numpy(frame)[None]), "box": boxes, "label": [3, 4, 5]}
    out = ScannerFrameCropd("image", "box", "image", label_keys="label")(data)
    r0, c0, r1, c1 = AREA
    assert out["image"].shape == (1, r1 - r0, c1 - c0)
    np.testing.assert_array_equal(np.asarray(out["image"])[0], frame[r0:r1, c0:c1])
    assert out["crop_box"].dtype == torch.float32 and out["crop_box"].tolist() == list(AREA)
    assert out["box"].tolist() == [[28, 38, 34, 46], [35, 48, 40, 52]]  # shifted; the second clipped to the crop
    assert out["label"].tolist() == [3, 4]  # the GUI box is gone, with its label
    assert _box_of(out["image"], 250) == out["box"][0].tolist()  # the box is still on the white rectangle
    assert out["image"].applied_operations[-1]["class"] == "ScannerFrameCrop"


def test_inverse_restores_the_frame_size_and_the_boxes():
    frame = _frame()
    crop = Compose([ScannerFrameCropd("image", "box", "image", label_keys="label")])
    out = crop({"image": MetaTensor(torch.from_numpy(frame)[None]), "box": [list(TARGET)], "label": [0]})
    back = crop.inverse(out)
    r0, c0, r1, c1 = AREA
    expected = np.zeros_like(frame)
    expected[r0:r1, c0:c1] = frame[r0:r1, c0:c1]
    assert back["image"].shape == (1, H, W)
    np.testing.assert_array_equal(np.asarray(back["image"])[0], expected)
    assert back["box"].tolist() == [list(TARGET)]
    # the array transform inverts alike
    cropper = ScannerFrameCrop()
    image = cropper(MetaTensor(torch.from_numpy(frame)[None]))
    assert image.shape == (1, r1 - r0, c1 - c0) and cropper.inverse(image).shape == (1, H, W)


# --------------------------------------------------------------------------------------------
# boxes through each geometric transform (pixel check)
# --------------------------------------------------------------------------------------------
def _rectangle_item():
    image = np.zeros((1, 40, 56), np.float32)
    image[0, 6:19, 33:47] = 1.0  # off-centre, so flips and transposes differ
    return {"image": MetaTensor(torch.from_numpy(image)), "box": torch.tensor([[6.0, 33.0, 19.0, 47.0]]),
            "label": torch.tensor([0])}


GEOMETRIC = [
    ("resize", lambda: ResizeBoxd("image", "box", "image", 32, anti_aliasing=False)),
    ("resize_up", lambda: ResizeBoxd("image", "box", "image", (80, 100), anti_aliasing=False)),
    ("hflip", lambda: RandFlipBoxd("image", "box", "image", prob=1.0, spatial_axis=1)),
    ("vflip", lambda: RandFlipBoxd("image", "box", "image", prob=1.0, spatial_axis=0)),
    ("affine", lambda: RandAffineBoxd("image", "box", "label", prob=1.0, scale_range=0.2, translate_range=6)),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name,make", GEOMETRIC, ids=[g[0] for g in GEOMETRIC])
def test_each_geometric_transform_keeps_the_box_on_the_rectangle(name, make, seed):
    transform = make()
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(seed)
    out = transform(_rectangle_item())
    assert out["box"].shape == (1, 4) and out["label"].tolist() == [0]
    np.testing.assert_allclose(out["box"][0].numpy(), _box_of(out["image"], 0.5), atol=1.0)


def test_hand_computed_flip_resize_and_affine():
    item = _rectangle_item()
    assert RandFlipBoxd("image", "box", "image", prob=1.0, spatial_axis=1)(item)["box"].tolist() == [[6, 9, 19, 23]]
    resized = ResizeBoxd("image", "box", "image", (20, 28))(item)
    assert resized["image"].shape == (1, 20, 28) and resized["box"].tolist() == [[3, 16.5, 9.5, 23.5]]
    # a pure scaling by s about the centre: boxes scale by 1 / s about (20, 28)
    affine = RandAffineBoxd("image", "box", prob=1.0, scale_range=0.0)
    affine.rand_affine.rand_affine_grid.scale_range = ((1.0, 1.0), (1.0, 1.0))  # s = 1 + U(1, 1) = 2
    box = affine(item)["box"][0].tolist()
    assert box == pytest.approx([20 + (6 - 20) / 2, 28 + (33 - 28) / 2, 20 + (19 - 20) / 2, 28 + (47 - 28) / 2])


def test_rotation_gives_a_loose_box_that_contains_the_rectangle():
    out = RandAffineBoxd("image", "box", prob=1.0, rotate_range=math.radians(20), scale_range=0.0).set_random_state(3)(
        _rectangle_item()
    )
    tight = _box_of(out["image"], 0.5)
    box = out["box"][0].tolist()
    assert box[0] <= tight[0] + 1 and box[1] <= tight[1] + 1 and box[2] >= tight[2] - 1 and box[3] >= tight[3] - 1


def test_affine_drops_a_box_moved_out_of_the_image():
    item = _rectangle_item()
    affine = RandAffineBoxd("image", "box", "label", prob=1.0, scale_range=0.0, translate_range=0.0)
    affine.rand_affine.rand_affine_grid.translate_range = ((-60.0, -60.0), (0.0, 0.0))  # everything moves 60 rows down
    out = affine(item)
    assert out["box"].shape == (0, 4) and out["label"].shape == (0,) and float(out["image"].max()) == 0.0


# --------------------------------------------------------------------------------------------
# CLAHE
# --------------------------------------------------------------------------------------------
def test_clahe_range_shape_and_input_scales():
    rng = np.random.default_rng(0)
    low_contrast = (100 + 20 * rng.random((2, 32, 40))).astype(np.float32)  # [100, 120] of [0, 255]
    out = CLAHE(clip_limit=0.02, kernel_size=8)(MetaTensor(torch.from_numpy(low_contrast)))
    assert isinstance(out, MetaTensor) and out.shape == (2, 32, 40) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float(out.std()) > 3 * float(low_contrast.std() / 255)  # contrast is stretched
    unit = CLAHE(clip_limit=0.02, kernel_size=8, in_max=1.0)(low_contrast / 255.0)
    assert isinstance(unit, np.ndarray) and unit.dtype == np.float32
    np.testing.assert_allclose(unit, np.asarray(out), atol=1e-6)
    flat = CLAHEd("image")({"image": np.full((1, 8, 8), 51.0, np.float32)})["image"]
    np.testing.assert_allclose(flat, 0.2)  # a constant image is only rescaled
    with pytest.raises(ValueError, match="clip_limit"):
        CLAHE(clip_limit=0.0)


# --------------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------------
@pytest.fixture
def frame_file(tmp_path):
    path = tmp_path / "frame.png"
    Image.fromarray(_frame().astype(np.uint8)).save(path)
    return str(path)


def test_load_framed_records_the_file_and_the_shape(frame_file):
    out = LoadFramed("image")({"image": frame_file})
    assert isinstance(out["image"], MetaTensor) and out["image"].shape == (1, H, W)
    assert out["image"].dtype == torch.float32 and out["image"].meta["filename_or_obj"] == frame_file
    assert out["image"].meta["spatial_shape"].tolist() == [H, W]
    np.testing.assert_array_equal(np.asarray(out["image"])[0], _frame().astype(np.uint8))


@pytest.mark.parametrize("channels,clahe", [(3, True), (1, False)])
def test_eval_recipe_shapes_dtypes_and_negatives(frame_file, channels, clahe):
    t = detection_eval_transforms(32, crop_frame=True, clahe=clahe, channels=channels)
    out = t({"image": frame_file, "box": [list(TARGET)], "label": [0], "case_id": "a"})
    assert out["image"].shape == (channels, 32, 32) and out["image"].dtype == torch.float32
    assert not isinstance(out["image"], MetaTensor)
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    assert out["box"].dtype == torch.float32 and out["box"].shape == (1, 4)
    assert out["label"].dtype == torch.int64 and out["label"].tolist() == [0]
    assert out["case_id"] == "a" and "box_transforms" not in out
    if channels == 3:
        assert torch.equal(out["image"][0], out["image"][2])
    negative = t({"image": frame_file, "box": [], "label": []})
    assert negative["box"].shape == (0, 4) and negative["box"].dtype == torch.float32
    assert negative["label"].shape == (0,) and negative["label"].dtype == torch.int64
    with pytest.raises(ValueError, match="channels"):
        detection_eval_transforms(32, channels=2)


@pytest.mark.parametrize("crop_frame", [False, True])
def test_boxes_to_original_round_trip_and_the_image_path(frame_file, crop_frame):
    boxes = [list(TARGET), [12.5, 20.25, 30.0, 41.75]]
    t = detection_eval_transforms(48, crop_frame=crop_frame)
    out = t({"image": frame_file, "box": boxes, "label": [0, 0]})
    assert out["crop_box"].tolist() == (list(AREA) if crop_frame else [0, 0, H, W])
    np.testing.assert_allclose(boxes_to_original(out["box"], out), boxes, atol=1e-4)
    np.testing.assert_allclose(boxes_to_original(out["box"].numpy(), {"crop_box": out["crop_box"],
                                                                      "spatial_size": (48, 48)}), boxes, atol=1e-4)
    # the predictor's image-only pipeline gives the same image and crop
    image = detection_image_transforms(48, crop_frame=crop_frame)(LoadFramed("image")({"image": frame_file}))
    assert isinstance(image["image"], MetaTensor)
    assert torch.equal(image["image"].as_tensor(), out["image"])
    assert torch.equal(image["crop_box"], out["crop_box"])
    with pytest.raises(KeyError, match="crop_box"):
        boxes_to_original(out["box"], {"image": out["image"]})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_augmentation_keeps_boxes_on_the_rectangle(tmp_path, seed):
    frame = np.zeros((H, W), np.uint8)
    frame[8:52, 6:70] = 60  # the scanner image area, uniform
    frame[20:32, 40:58] = 255  # the lesion the box marks
    frame[2, 6:70:4] = 255  # GUI text
    path = tmp_path / "f.png"
    Image.fromarray(frame).save(path)
    item = {"image": str(path), "box": [[20, 40, 32, 58]], "label": [1]}
    t = detection_train_transforms(32, crop_frame=True, clahe=False, channels=1, affine_prob=1.0, scale=0.15,
                                   translate=0.1, gamma_prob=0.0, contrast_prob=0.0, noise_prob=0.0)
    t.set_random_state(seed)
    for _ in range(6):
        out = t(item)
        if out["box"].shape[0] == 0:  # moved out by the shift: the rectangle is gone as well
            assert float(out["image"].max()) < 0.6
            continue
        assert out["label"].tolist() == [1]
        np.testing.assert_allclose(out["box"][0].numpy(), _box_of(out["image"], 0.62), atol=1.0)
    # with all the augmentation on, the outputs stay in range
    t_all = detection_train_transforms(32, crop_frame=True).set_random_state(seed)
    for _ in range(3):
        out = t_all(item)
        assert out["image"].shape == (3, 32, 32) and 0 <= float(out["image"].min()) <= float(out["image"].max()) <= 1
        assert ((out["box"] >= 0) & (out["box"] <= 32)).all()
