"""pipelines.predictors: DICOM / PNG input and folder inference (LA-Net)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
from PIL import Image

from networks.nets.lanet import LANet
from pipelines.predictors import infer_folder, list_input_images, load_input_image

ROWS, COLS = 48, 64  # non-square: a transposed read has the wrong shape

LUMA = np.array([0.299, 0.587, 0.114])


def _pattern(rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """uint8 ramp that grows faster down than across, with a bright top-left block: flips and transposes differ."""
    g = (np.arange(rows)[:, None] * 3 + np.arange(cols)[None, :]).astype(np.uint8)
    g[:5, :10] = 250
    return g


def _rgb_pattern() -> np.ndarray:
    g = _pattern().astype(np.int64)
    return np.stack([g, 255 - g, (2 * g) % 256], axis=-1).astype(np.uint8)


def _rescaled(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) * 255.0 / (x.max() - x.min())


def _write_dicom(path, array: np.ndarray, vector: bool = False) -> str:
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return str(path)


def _lanet() -> LANet:
    torch.manual_seed(0)
    return LANet(num_classes=2, backbone="resnet18", spatial_dims=2, in_channels=1).eval()


# --------------------------------------------------------------------------------------------
# DICOM input
# --------------------------------------------------------------------------------------------
DICOM_CASES = [  # (id, array written, isVector, expected (rows, cols) before the min-max rescale)
    ("gray_uint8", _pattern(), False, _pattern().astype(np.float64)),
    ("rgb_uint8", _rgb_pattern(), True, _rgb_pattern().astype(np.float64) @ LUMA),
    ("gray_uint16", _pattern().astype(np.uint16) * 200, False, _pattern().astype(np.float64)),
]


@pytest.mark.parametrize("array,vector,expected", [c[1:] for c in DICOM_CASES], ids=[c[0] for c in DICOM_CASES])
def test_load_dicom_frame_orientation_and_values(tmp_path, array, vector, expected):
    path = _write_dicom(tmp_path / "frame.dcm", array, vector)
    img = load_input_image(path)
    assert img.dtype == np.float32 and img.shape == (1, ROWS, COLS)
    assert img.min() == 0.0 and img.max() == pytest.approx(255.0)
    ref = _rescaled(expected)
    np.testing.assert_allclose(img[0], ref, atol=1e-3)
    for flipped in (ref[::-1], ref[:, ::-1], ref[::-1, ::-1]):  # the pattern tells flips apart
        assert np.abs(img[0] - flipped).max() > 20


def test_load_dicom_constant_frame_is_zero(tmp_path):
    img = load_input_image(_write_dicom(tmp_path / "flat.dcm", np.full((ROWS, COLS), 7, np.uint8)))
    assert img.shape == (1, ROWS, COLS) and not img.any()


NON_2D_CASES = [  # (id, array, isVector): 3 and 4 grayscale frames look like RGB(A) without the channel flag
    ("gray_2_frames", np.stack([_pattern()] * 2), False),
    ("gray_3_frames", np.stack([_pattern()] * 3), False),
    ("gray_4_frames", np.stack([_pattern()] * 4), False),
    ("rgb_3_frames", np.stack([_rgb_pattern()] * 3), True),
]


@pytest.mark.parametrize("array,vector", [c[1:] for c in NON_2D_CASES], ids=[c[0] for c in NON_2D_CASES])
def test_load_dicom_multi_frame_raises_naming_file(tmp_path, array, vector):
    path = _write_dicom(tmp_path / "cine.dcm", array, vector)
    assert sitk.ReadImage(path).GetSize()[2] == array.shape[0]  # really written as one multi-frame file
    with pytest.raises(ValueError, match="cine.dcm"):
        load_input_image(path)


def test_list_input_images_keeps_dicom_skips_masks(tmp_path):
    _write_dicom(tmp_path / "b.dcm", _pattern())
    Image.fromarray(_pattern()).save(tmp_path / "a.png")
    Image.fromarray(_pattern()).save(tmp_path / "a_mask.png")
    Image.fromarray(_pattern()).save(tmp_path / "a_mask_1.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.rsplit("/", 1)[-1] for p in list_input_images(str(tmp_path))] == ["a.png", "b.dcm"]


# --------------------------------------------------------------------------------------------
# folder inference
# --------------------------------------------------------------------------------------------
PNG_SHAPE = (56, 40)  # portrait, unlike the landscape DICOM


def _inference_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _write_dicom(src / "scan.dcm", _rgb_pattern(), vector=True)
    Image.fromarray(_pattern(*PNG_SHAPE)).save(src / "photo.png")
    return src, {"photo": PNG_SHAPE, "scan": (ROWS, COLS)}


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_mask_file(path, shape):
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (shape[1], shape[0])
        mask = np.asarray(im)
    assert mask.dtype == np.uint8 and mask.shape == shape
    assert set(np.unique(mask).tolist()) <= {0, 255}
    return mask


def test_infer_folder_lanet_csv_and_masks(tmp_path):
    src, shapes = _inference_folder(tmp_path)
    out = infer_folder(_lanet(), str(src), str(tmp_path / "out"), ["benign", "malignant"], image_size=64)
    rows = _read_csv(f"{out}/predictions.csv")
    assert [r["file"] for r in rows] == ["photo.png", "scan.dcm"]
    for r in rows:
        p = [float(r["prob_benign"]), float(r["prob_malignant"])]
        assert all(0.0 <= v <= 1.0 for v in p) and sum(p) == pytest.approx(1.0, abs=1e-6)
        assert r["prediction"] == ["benign", "malignant"][int(np.argmax(p))]
    for name, shape in shapes.items():
        _check_mask_file(f"{out}/{name}_mask.png", shape)


class _FixedNet(nn.Module):
    """Logits (2, 0) and an all-ones mask: the written mask is exactly the centre crop mapped back."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, _, h, w = x.shape
        return {"logits": torch.tensor([[2.0, 0.0]]).expand(b, 2), "mask": torch.ones(b, 1, h // 32, w // 32)}


def _crop_band(n_orig: int, n_resized: int, start: int, size: int = 64) -> np.ndarray:
    """Original pixels whose centre lies inside the crop ``[start, start + size)`` of the resized axis."""
    centre = (np.arange(n_orig) + 0.5) * n_resized / n_orig
    return (centre >= start) & (centre < start + size)


def test_infer_folder_places_crop_back_in_original_frame(tmp_path):
    src, shapes = _inference_folder(tmp_path)
    out = infer_folder(_FixedNet(), str(src), str(tmp_path / "out"), ["benign", "malignant"], image_size=64)
    p0 = math.exp(2) / (1 + math.exp(2))
    for r in _read_csv(f"{out}/predictions.csv"):
        assert float(r["prob_benign"]) == pytest.approx(p0, rel=1e-6) and r["prediction"] == "benign"
    # landscape DICOM 48 x 64: short side -> 64 x 85, crop columns 10..73 -> original columns 8..55, all rows
    scan = _check_mask_file(f"{out}/scan_mask.png", shapes["scan"]) > 0
    np.testing.assert_array_equal(scan, np.broadcast_to(_crop_band(COLS, 85, 10), scan.shape))
    assert np.flatnonzero(scan[0])[[0, -1]].tolist() == [8, 55]
    # portrait PNG 56 x 40: 90 x 64, the crop is along the rows (13..76) -> original rows 8..47, all columns
    photo = _check_mask_file(f"{out}/photo_mask.png", shapes["photo"]) > 0
    np.testing.assert_array_equal(photo, np.broadcast_to(_crop_band(56, 90, 13)[:, None], photo.shape))
    assert np.flatnonzero(photo[:, 0])[[0, -1]].tolist() == [8, 47]


def test_infer_folder_refuses_output_inside_input(tmp_path):
    src, _ = _inference_folder(tmp_path)
    with pytest.raises(ValueError, match="inside the input folder"):
        infer_folder(_FixedNet(), str(src), str(src / "preds"), ["benign", "malignant"], image_size=64)


# --------------------------------------------------------------------------------------------
# TensorBoard picture
# --------------------------------------------------------------------------------------------

