"""pipelines.predictors: DICOM / PNG input, the folder predictor (LA-Net, a plain classifier, a box hook),
unreadable files, rank 0 only, figures, the inversion of the evaluation pre-processing."""

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
from pipelines.predictors import (
    FolderPredictor,
    LANetPredictor,
    infer_folder,
    list_input_images,
    load_input_image,
)
from transforms.recipes import busi_image_transforms

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


def _corrupt_folder(tmp_path):
    src, shapes = _inference_folder(tmp_path)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _write_dicom(src / "cine.dcm", np.stack([_pattern()] * 2))  # two frames: refused
    return src, shapes


def test_unreadable_files_are_recorded_and_the_rest_predicted(tmp_path, caplog):
    src, _ = _corrupt_folder(tmp_path)
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="pipelines.predictors.folder"):
        summary = LANetPredictor(_FixedNet(), ["benign", "malignant"], image_size=64)(str(src), str(out))
    assert summary.num_images == 4 and summary.num_failed == 2
    assert [f for f, _ in summary.failed] == ["broken.png", "cine.dcm"]
    assert "2 skipped" in caplog.text and "broken.png" in caplog.text
    rows = {r["file"]: r for r in _read_csv(summary.csv_path)}
    assert list(rows) == ["broken.png", "cine.dcm", "photo.png", "scan.dcm"]
    assert rows["broken.png"]["status"] == "error" and "UnidentifiedImageError" in rows["broken.png"]["error"]
    assert rows["cine.dcm"]["status"] == "error" and "expected one 2D frame" in rows["cine.dcm"]["error"]
    for bad in ("broken.png", "cine.dcm"):
        assert rows[bad]["prob_benign"] == rows[bad]["prediction"] == ""
    for good in ("photo.png", "scan.dcm"):
        assert rows[good]["status"] == "ok" and rows[good]["error"] == "" and rows[good]["prediction"] == "benign"
    assert sorted(p.name for p in out.iterdir()) == ["photo_mask.png", "predictions.csv", "scan_mask.png"]


class _BoxPredictor(LANetPredictor):
    """A detector-style hook: the boxes of the mask in the original frame as a CSV column (no mask file)."""

    def handle_output(self, output, data, name, pred_dir):
        from transforms.busi import MasksToBoxes

        _, mask = output["logits"], output["mask"]
        prob = self.to_original_frame(torch.nn.functional.interpolate(mask, size=data["image"].shape[1:])[0], data)
        return {"boxes": ";".join(":".join(str(int(v)) for v in b) for b in MasksToBoxes()(prob >= 0.5))}


def test_a_subclass_overrides_one_hook(tmp_path):
    src, _ = _inference_folder(tmp_path)
    summary = _BoxPredictor(_FixedNet(), ["benign", "malignant"], image_size=64)(str(src), str(tmp_path / "out"))
    rows = {r["file"]: r for r in _read_csv(summary.csv_path)}
    # the centre crops mapped back (see test_infer_folder_places_crop_back_in_original_frame), standard mode
    assert rows["scan.dcm"]["boxes"] == "0:8:48:56" and rows["photo.png"]["boxes"] == "8:0:48:40"
    assert list(rows["scan.dcm"])[-3:] == ["boxes", "status", "error"]
    assert not list((tmp_path / "out").glob("*_mask.png"))


class _Logits(nn.Module):
    """A plain classifier: logits (mean, -mean) of the input, no mask."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, -m], dim=1)


def test_plain_classifier_writes_probabilities_only(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(src / "white.png")  # -> +1 after [-1, 1] scaling
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(src / "black.png")  # -> -1
    predictor = FolderPredictor(_Logits(), ["bright", "dark"], image_size=40)  # 40 x 40: no resampling
    summary = predictor(str(src), str(tmp_path / "out"))
    rows = {r["file"]: r for r in _read_csv(summary.csv_path)}
    p = math.exp(1) / (math.exp(1) + math.exp(-1))
    assert float(rows["white.png"]["prob_bright"]) == pytest.approx(p, rel=1e-6)
    assert rows["white.png"]["prediction"] == "bright" and rows["black.png"]["prediction"] == "dark"
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["predictions.csv"]


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    import ignite.distributed as idist

    src, _ = _inference_folder(tmp_path)
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    summary = LANetPredictor(_FixedNet(), ["benign", "malignant"], image_size=64)(str(src), str(tmp_path / "out"))
    assert summary.csv_path is None and summary.num_images == 0 and not (tmp_path / "out").exists()


def test_figures_are_written_in_the_original_frame(tmp_path):
    src, shapes = _inference_folder(tmp_path)
    out = tmp_path / "out"
    summary = LANetPredictor(_lanet(), ["benign", "malignant"], image_size=64, save_figures=True)(str(src), str(out))
    assert summary.num_failed == 0
    for name in shapes:
        with Image.open(out / "figures" / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_image_transforms_match_the_recipe_and_invert(tmp_path):
    """busi_image_transforms gives the image of transforms.recipes.busi_eval_transforms; its inverse maps a
    network-grid map of ones back to exactly the pixels the centre crop came from."""
    from transforms.recipes import busi_eval_transforms

    rng = np.random.default_rng(0)
    for shape in ((56, 40), (30, 90)):
        path = str(tmp_path / f"img_{shape[0]}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        recipe = busi_eval_transforms(32)({"image": path})["image"]
        from monai.data import MetaTensor

        mine = busi_image_transforms(32)({"image": MetaTensor(torch.from_numpy(load_input_image(path)))})["image"]
        torch.testing.assert_close(mine.as_tensor(), torch.as_tensor(recipe), atol=0, rtol=0)
    predictor = FolderPredictor(_Logits(), ["a", "b"], image_size=32)
    data = predictor.preprocessing(predictor.load(path))  # 30 x 90 -> 32 x 96, crop columns 32..63
    back = predictor.to_original_frame(torch.ones(1, 32, 32), data)
    assert back.shape == (1, 30, 90)
    band = _crop_band(90, 96, 32, 32)
    np.testing.assert_array_equal(back[0].numpy() >= 0.5, np.broadcast_to(band, (30, 90)))


# --------------------------------------------------------------------------------------------
# TensorBoard picture
# --------------------------------------------------------------------------------------------

