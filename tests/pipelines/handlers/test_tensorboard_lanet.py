"""pipelines.handlers.LANetTensorBoardHandler: the LA-Net TensorBoard picture."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.engines import SupervisedEvaluator
from PIL import Image

from networks.nets.lanet import LANet
from pipelines.engines import LANetEvalStep
from pipelines.evaluation.saliency import grad_cam
from pipelines.handlers import LANetTensorBoardHandler
from pipelines.metrics import MaskLocalisationHandler

ROWS, COLS = 48, 64  # non-square: a transposed read has the wrong shape


H, W = 64, 96  # non-square so that the tile layout (rows = images, columns = panels) is checked


def _lanet() -> LANet:
    torch.manual_seed(0)
    return LANet(num_classes=2, backbone="resnet18", spatial_dims=2, in_channels=1).eval()


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
    dice = MaskLocalisationHandler("dice")
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
