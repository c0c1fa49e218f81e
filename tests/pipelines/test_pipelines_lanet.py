"""pipelines.lanet: DICOM input and folder inference, the TensorBoard picture, the mask Dice / IoU metric.

(Named apart from tests/networks/nets/test_lanet.py: test modules are imported by basename.)
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
import torch.nn.functional as F
from ignite.engine import Engine
from monai.engines import SupervisedEvaluator
from PIL import Image

from networks.nets.lanet import LANet
from pipelines.lanet import (
    LANetEvalStep,
    LANetTensorBoardHandler,
    MaskDiceMetric,
    infer_folder,
    list_input_images,
    load_input_image,
    mask_dice_iou,
)
from pipelines.saliency import grad_cam

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
H, W = 64, 96  # non-square so that the tile layout (rows = images, columns = panels) is checked


def _heat(p: np.ndarray) -> np.ndarray:
    return np.stack([p, 1 - np.abs(2 * p - 1), 1 - p])


def _picture_output(batch: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 0.5, W), indexing="ij")
    base = yy * 0.7 + xx * 0.3
    images = torch.stack([base, -base.flip(0), base.flip(1) * 0.5])[:batch, None]
    images = images + 0.05 * torch.randn(images.shape, generator=g)
    mask = torch.zeros(batch, 1, H, W)
    mask[0, :, 10:30, 20:70] = 1
    mask[1, :, 40:60, 5:25] = 1  # image 2 keeps an empty mask
    mask_prob = torch.tensor([[0.9, 0.2, 0.0], [0.4, 0.6, 1.0]]).expand(batch, 1, 2, 3).clone()
    mask_prob[1] = 1 - mask_prob[1]
    return {"image": images, "mask": mask, "mask_prob": mask_prob}


def _panel(picture: np.ndarray, row: int, col: int) -> np.ndarray:
    return picture[:, row * H : (row + 1) * H, col * W : (col + 1) * W]


def test_make_picture_panels(tmp_path):
    net, out = _lanet(), _picture_output()
    handler = LANetTensorBoardHandler(log_dir=str(tmp_path), num_images=2)
    pic = handler.make_picture(net, out)
    assert pic.dtype == np.float32 and pic.shape == (3, 2 * H, 4 * W)  # num_images < batch: 2 rows
    assert pic.min() >= 0.0 and pic.max() <= 1.0
    pred = F.interpolate(out["mask_prob"], size=(H, W), mode="bilinear", align_corners=False).numpy()
    cam = grad_cam(net, out["image"][:2]).numpy()
    for i in range(2):
        img = out["image"][i, 0].numpy()
        gray = (img - img.min()) / (img.max() - img.min())
        np.testing.assert_allclose(_panel(pic, i, 0), np.stack([gray] * 3), atol=1e-6)  # input
        gt_panel, m = _panel(pic, i, 1), out["mask"][i, 0].numpy() > 0
        assert np.array_equal(gt_panel[:, m].T, np.tile([1.0, 0.0, 0.0], (m.sum(), 1)))  # red on the lesion
        assert np.array_equal(gt_panel[:, ~m].T, np.tile([0.0, 0.0, 1.0], ((~m).sum(), 1)))  # blue elsewhere
        np.testing.assert_allclose(_panel(pic, i, 2), _heat(pred[i, 0]), atol=1e-6)  # upsampled prediction
        overlay = _panel(pic, i, 3)
        np.testing.assert_allclose(overlay, 0.5 * np.stack([gray] * 3) + 0.5 * _heat(cam[i, 0]), atol=1e-5)
        np.testing.assert_allclose(overlay[0] + overlay[2] - gray, 0.5, atol=1e-5)  # heat R + B = 1
    # the prediction panel of image 0: high top-left (0.9, red-ish), low top-right (0.0, blue)
    assert _panel(pic, 0, 2)[0, 0, 0] == pytest.approx(0.9) and _panel(pic, 0, 2)[2, 0, -1] == pytest.approx(1.0)


def test_make_picture_without_cam_or_mask_prediction(tmp_path):
    handler = LANetTensorBoardHandler(log_dir=str(tmp_path), num_images=4, target_layer=None)
    out = dict(_picture_output(batch=2), mask_prob=None)
    pic = handler.make_picture(_lanet(), out)
    assert pic.shape == (3, 2 * H, 3 * W)  # batch < num_images: 2 rows; no Grad-CAM: 3 panels
    assert not _panel(pic, 0, 2).any() and not _panel(pic, 1, 2).any()  # no mask prediction: black


def _busi_batch(seed: int) -> dict[str, torch.Tensor]:
    """Two speckled images with a bright elliptic lesion; image 0 has its mask, image 1 none."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    lesion = (((yy - 24) / 16) ** 2 + ((xx - 55) / 25) ** 2 <= 1).float()
    mask = torch.zeros(2, 1, H, W)
    mask[0, 0] = lesion
    background = (yy / H - 0.5)[None, None] + 0.3 * torch.rand(2, 1, H, W, generator=g)
    return {
        "image": (background + torch.stack([lesion, lesion.flip(1)])[:, None]).clamp(-1, 1),
        "mask": mask,
        "has_mask": torch.tensor([1, 0]),
        "label": torch.tensor([0, 1]),
    }


def test_tensorboard_handler_end_to_end(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    net = _lanet()
    batches = [_busi_batch(1), _busi_batch(2)]
    handler = LANetTensorBoardHandler(log_dir=str(tmp_path / "tb"), num_images=2, tag="val_pic")
    dice = MaskDiceMetric("dice")
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=batches, network=net, iteration_update=LANetEvalStep(),
        key_val_metric={"val_mask_dice": dice}, val_handlers=[handler], decollate=False,
    )
    for epoch in (1, 2):
        evaluator.run(global_epoch=epoch)
    handler._writer.close()
    assert 0.0 <= evaluator.state.metrics["val_mask_dice"] <= 1.0

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert "val_pic" in acc.Tags()["images"]
    events = acc.Images("val_pic")
    assert [e.step for e in events] == [1, 2]  # one picture per run, although each run has two batches

    with torch.no_grad():
        mask_prob = net(batches[0]["image"])["mask"]
    expected = handler.make_picture(net, dict(batches[0], mask_prob=mask_prob))  # the first batch's picture
    for e in events:
        with Image.open(io.BytesIO(e.encoded_image_string)) as im:
            im.load()
            assert im.mode == "RGB" and im.size == (expected.shape[2], expected.shape[1])
            decoded = np.asarray(im)
        assert (e.width, e.height) == im.size
        np.testing.assert_allclose(decoded.transpose(2, 0, 1) / 255.0, expected, atol=1.01 / 255)
    Image.fromarray(decoded).save("/tmp/lanet_tb_picture.png")


# --------------------------------------------------------------------------------------------
# mask Dice / IoU
# --------------------------------------------------------------------------------------------
def _block_prob(value: float = 1.0, r=slice(1, 3), c=slice(1, 3)) -> torch.Tensor:
    p = torch.zeros(1, 1, 4, 4)
    p[0, 0, r, c] = value
    return p


def _gt(r=slice(2, 6), c=slice(4, 8)) -> torch.Tensor:
    g = torch.zeros(1, 1, 8, 8)
    g[0, 0, r, c] = 1
    return g


# 4x4 -> 8x8 bilinear (align_corners=False) of a block at [1:3, 1:3] is 0.75 / 1 / 1 / 0.75 over rows and columns
# 2..5: at 0.5 the prediction is the 16 pixels [2:6, 2:6]; at 0.6 its four corners (0.5625) drop out (12 pixels).
# GT [2:6, 4:8] (16 pixels) overlaps [2:6, 4:6] (8 pixels; 6 without the corners).
DICE_CASES = [
    ("half_overlap", _block_prob(), _gt(), 0.5, 2 * 8 / 32, 8 / 24),
    ("bilinear_corners_drop", _block_prob(), _gt(), 0.6, 2 * 6 / 28, 6 / 22),
    ("exact", _block_prob(), _gt(c=slice(2, 6)), 0.5, 1.0, 1.0),
    ("disjoint", _block_prob(), _gt(r=slice(6, 8), c=slice(0, 2)), 0.5, 0.0, 0.0),
    ("both_empty", torch.full((1, 1, 4, 4), 0.1), _gt(r=slice(0, 0)), 0.5, 1.0, 1.0),
    ("empty_gt_false_positive", _block_prob(), _gt(r=slice(0, 0)), 0.5, 0.0, 0.0),
    ("missed_lesion", torch.zeros(1, 1, 4, 4), _gt(), 0.5, 0.0, 0.0),
]


@pytest.mark.parametrize("prob,gt,threshold,dice,iou", [c[1:] for c in DICE_CASES], ids=[c[0] for c in DICE_CASES])
def test_mask_dice_iou_by_hand(prob, gt, threshold, dice, iou):
    d, j = mask_dice_iou(prob, gt, threshold)
    assert d.shape == (1,) and j.shape == (1,)
    assert d[0] == pytest.approx(dice) and j[0] == pytest.approx(iou)


def test_mask_dice_iou_batch_and_non_square():
    prob = torch.cat([DICE_CASES[0][1], DICE_CASES[4][1], DICE_CASES[6][1]])
    gt = torch.cat([DICE_CASES[0][2], DICE_CASES[4][2], DICE_CASES[6][2]])
    dice, iou = mask_dice_iou(prob, gt)
    np.testing.assert_allclose(dice, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(iou, [1 / 3, 1.0, 0.0])
    # 2x4 map -> 8x16 GT: left half predicted, GT the left quarter -> Dice 2 * 32 / (64 + 32), IoU 32 / 64
    prob = torch.tensor([[[[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]]])
    gt = torch.zeros(1, 1, 8, 16)
    gt[..., :4] = 1
    dice, iou = mask_dice_iou(prob, gt)
    assert dice[0] == pytest.approx(2 / 3) and iou[0] == pytest.approx(0.5)


def _metric_batch(idx, has_mask):
    return {
        "mask_prob": torch.cat([DICE_CASES[i][1] for i in idx]),
        "mask": torch.cat([DICE_CASES[i][2] for i in idx]),
        "has_mask": torch.tensor(has_mask),
    }


METRIC_CASES = [  # (id, kind, batches, expected mean over has_mask = 1)
    # batch 1: half overlap (0.5), an unannotated image that would score 1 (both empty) -> ignored;
    # batch 2: annotated empty GT with a false positive (0), exact (1)
    ("dice", "dice", [([0, 4], [1, 0]), ([5, 2], [1, 1])], (0.5 + 0.0 + 1.0) / 3),
    ("iou", "iou", [([0, 4], [1, 0]), ([5, 2], [1, 1])], (1 / 3 + 0.0 + 1.0) / 3),
    ("unannotated_batch_skipped", "dice", [([0], [1]), ([4, 5], [0, 0])], 0.5),
    ("nothing_annotated", "iou", [([4, 5], [0, 0])], float("nan")),
]


@pytest.mark.parametrize("kind,batches,expected", [c[1:] for c in METRIC_CASES], ids=[c[0] for c in METRIC_CASES])
def test_mask_dice_metric_on_engine(kind, batches, expected):
    engine = Engine(lambda _engine, batch: batch)
    MaskDiceMetric(kind).attach(engine, "m")
    data = [_metric_batch(*b) for b in batches]
    for _ in range(2):  # a second run must not carry the first run's values
        value = engine.run(data).metrics["m"]
        if math.isnan(expected):
            assert math.isnan(value)
        else:
            assert value == pytest.approx(expected)


def test_mask_dice_metric_no_prediction_and_bad_kind():
    metric = MaskDiceMetric()
    metric.reset()
    metric.update((None, _gt(), torch.tensor([1])))
    assert math.isnan(metric.compute())
    metric.update((DICE_CASES[0][1], DICE_CASES[0][2], torch.tensor([1])))
    metric.update((DICE_CASES[1][1], DICE_CASES[1][2], torch.tensor([1])))  # threshold of the metric (0.5) applies
    assert metric.compute() == pytest.approx(0.5)
    metric = MaskDiceMetric(threshold=0.6)
    metric.reset()
    metric.update((DICE_CASES[1][1], DICE_CASES[1][2], torch.tensor([1])))
    assert metric.compute() == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="kind"):
        MaskDiceMetric("hausdorff")
