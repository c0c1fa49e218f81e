"""Grad-CAM on the last backbone stage and the LA-Net figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from networks.nets.lanet import LANet, ResNetClassifier
from pipelines.evaluation import grad_cam, save_lanet_figure


class _MeanNet(nn.Module):
    """score_c = +-mean(x): Grad-CAM of class 0 is ReLU(x) up to scale, of class 1 ReLU(-x)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.layer4 = nn.Identity()

    def forward(self, x):
        m = self.backbone.layer4(x).mean(dim=(1, 2, 3))
        return {"logits": torch.stack([m, -m], dim=1)}


def test_grad_cam_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [-1.0, 3.0]]]])
    cam0 = grad_cam(_MeanNet(), x, class_idx=0)
    torch.testing.assert_close(cam0, torch.tensor([[[[1 / 3, 2 / 3], [0.0, 1.0]]]]))
    cam1 = grad_cam(_MeanNet(), x, class_idx=1)  # only the negative pixel
    torch.testing.assert_close(cam1, torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]]]))
    zero = grad_cam(_MeanNet(), torch.zeros(1, 1, 2, 2))
    assert zero.abs().sum() == 0


@pytest.mark.parametrize("net_cls", [LANet, ResNetClassifier])
def test_grad_cam_shape_range_and_no_side_effects(net_cls):
    torch.manual_seed(0)
    net = net_cls().train()
    x = torch.randn(2, 1, 64, 64)
    cam = grad_cam(net, x)
    assert cam.shape == (2, 1, 64, 64) and cam.min() >= 0 and cam.max() <= 1
    assert torch.allclose(cam.flatten(1).amax(1), torch.ones(2))
    assert net.training and not net.backbone.layer4._forward_hooks
    assert all(p.grad is None for p in net.parameters())
    per_image = grad_cam(net, x, class_idx=[0, 1])
    torch.testing.assert_close(per_image[1:], grad_cam(net, x[1:], class_idx=1), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="target_layer 'layer9'"):
        grad_cam(net, x, target_layer="layer9")


def test_grad_cam_through_data_parallel():
    x = torch.tensor([[[[1.0, 2.0], [-1.0, 3.0]]]])
    wrapped = nn.DataParallel(_MeanNet())  # on CPU: a wrapper only, named "module.backbone.layer4" inside
    assert "module.backbone.layer4" in dict(wrapped.named_modules())
    for layer in ("backbone.layer4", "module.backbone.layer4"):
        torch.testing.assert_close(grad_cam(wrapped, x, class_idx=0), torch.tensor([[[[1 / 3, 2 / 3], [0.0, 1.0]]]]))
        torch.testing.assert_close(grad_cam(wrapped, x, class_idx=1, target_layer=layer),
                                   torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]]]))
    with pytest.raises(ValueError, match="target_layer 'layer9'"):
        grad_cam(wrapped, x, target_layer="module.layer9")


def test_grad_cam_through_distributed_data_parallel(tmp_path):
    """One gloo process (world size 1): the maps equal the plain network's, and DDP still trains afterwards."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        net = ResNetClassifier()
        x = torch.randn(2, 1, 64, 64)
        reference = grad_cam(net, x)
        ddp = nn.parallel.DistributedDataParallel(net)
        ddp.train()
        for layer in ("backbone.layer4", "module.backbone.layer4"):
            torch.testing.assert_close(grad_cam(ddp, x, target_layer=layer), reference)
        assert ddp.training and net.training and not net.backbone.layer4._forward_hooks
        assert all(p.grad is None for p in net.parameters())
        for _ in range(2):  # the reducer is not left waiting: two DDP training steps run
            logits = ddp(x)
            logits = logits["logits"] if isinstance(logits, dict) else logits
            logits.sum().backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()


def test_figure_is_written(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((64, 64)).astype(np.float32)
    gt = np.zeros((64, 64), np.float32)
    gt[20:40, 16:44] = 1
    pred = torch.zeros(1, 1, 2, 2)
    pred[0, 0, 0, 0] = 0.9  # LA-Net map size: upsampled to the image
    cam = torch.rand(1, 1, 64, 64)
    path = save_lanet_figure(
        str(tmp_path / "fig" / "case.png"), image, gt, pred, cam, ("benign", "malignant"), [0.2, 0.8], true_label=0
    )
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (1200, 440)
    assert (tmp_path / "fig" / "case.png").stat().st_size > 1000
    fig = save_lanet_figure(str(tmp_path / "unused.png"), image, gt, pred, cam, ("benign", "malignant"), [0.2, 0.8], return_figure=True)
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "P(lesion)"]
    assert len(fig.axes) == 4 and len(colour_bars) == 1  # three panels + the probability panel's colour bar
    assert colour_bars[0].get_ylim() == (0.0, 1.0)
    assert not (tmp_path / "unused.png").exists()
    with pytest.raises(ValueError, match="probs has 3 entries"):
        save_lanet_figure(str(tmp_path / "x.png"), image, None, pred, None, ("benign", "malignant"), [0.1, 0.2, 0.7])
