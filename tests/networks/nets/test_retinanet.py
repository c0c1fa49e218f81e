"""RetinaNet on a MONAI ResNet + feature pyramid (networks.nets.retinanet): levels and strides, TorchScript, a training
step of MONAI's detector without torchvision, the frozen backbone, local pretrained weights and the anchors."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from monai.apps.detection.networks import retinanet_detector as monai_detector
from monai.networks.nets.resnet import ResNet
from monai.utils import OptionalImportError, optional_import

from networks import create_network
from networks.nets.retinanet import (
    ExportedRetinaNet,
    build_detector,
    patch_missing_torchvision,
    retinanet,
)

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
TINY = {"depth": 10, "fpn_channels": 8, "block_inplanes": (8, 16, 16, 16)}


def _targets():
    return [
        {"box": torch.tensor([[10.0, 20.0, 34.0, 52.0]]), "label": torch.tensor([0])},
        {"box": torch.zeros(0, 4), "label": torch.zeros(0, dtype=torch.long)},  # a negative image
    ]


def test_levels_strides_and_channels_of_the_seed_setting():
    torch.manual_seed(0)
    net = retinanet(depth=18, returned_layers=(1, 2, 3, 4), fpn_channels=16, in_channels=1)
    features = net.feature_extractor
    assert features.strides == (4, 8, 16, 32, 64) and features.num_levels == 5
    assert features.in_channels_list == [64, 128, 256, 512] and features.out_channels == 16
    assert tuple(net.size_divisible) == (64, 64) and net.num_anchors == 3 and net.num_classes == 1
    out = net(torch.randn(1, 1, 128, 192))
    assert set(out) == {"classification", "box_regression"}
    assert [tuple(o.shape) for o in out["classification"]] == [(1, 3, 128 // s, 192 // s) for s in features.strides]
    assert [tuple(o.shape) for o in out["box_regression"]] == [(1, 12, 128 // s, 192 // s) for s in features.strides]
    # bottleneck stages: 4 x the widths; only the stages up to the last returned one are kept
    deep = retinanet(depth=50, returned_layers=(2, 3), fpn_channels=8)
    assert deep.feature_extractor.in_channels_list == [512, 1024] and deep.feature_extractor.strides == (8, 16, 32)
    assert not any(k.startswith("feature_extractor.body.layer4") for k in deep.state_dict())
    # MONAI's names for a detector checkpoint: feature_extractor.body.<resnet name>, feature_extractor.fpn.<...>
    assert {"feature_extractor.body.conv1.weight", "feature_extractor.body.layer1.0.conv1.weight",
            "feature_extractor.fpn.inner_blocks.0.weight"} <= set(net.state_dict())


def test_registry_and_argument_checks():
    net = create_network("retinanet", **TINY)
    assert net.feature_extractor.body.conv1.in_channels == 3 and net.num_classes == 1
    with pytest.raises(ValueError, match="returned_layers"):
        retinanet(returned_layers=(3, 2))
    with pytest.raises(ValueError, match="depth"):
        retinanet(depth=11)
    with pytest.raises(ValueError, match="multiple of 8"):
        retinanet(fpn_channels=12)


def test_torchscript_matches_eager():
    torch.manual_seed(0)
    net = retinanet(**TINY).eval()
    x = torch.rand(2, 3, 64, 96)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        expected, got = net(x), scripted(x)
    for key in ("classification", "box_regression"):
        assert len(got[key]) == len(expected[key]) == 4
        for a, b in zip(got[key], expected[key]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_exported_retinanet_runs_in_the_detector_like_the_eager_network():
    torch.manual_seed(0)
    net = retinanet(**TINY).eval()
    wrapped = ExportedRetinaNet(torch.jit.script(net), net)
    assert (wrapped.num_classes, wrapped.num_anchors, wrapped.cls_key) == (net.num_classes, net.num_anchors,
                                                                          "classification")
    x = [torch.rand(3, 64, 96), torch.rand(3, 64, 96)]
    sizes = (16, 32, 64, 128)
    eager, exported = build_detector(net, sizes).eval(), build_detector(wrapped, sizes).eval()
    for d in (eager, exported):
        d.set_box_selector_parameters(score_thresh=0.0, detections_per_img=20)
    with torch.no_grad():
        expected, got = eager(x), exported(x)
    for e, g in zip(expected, got):
        assert len(e["box"]) == 20
        torch.testing.assert_close(g["box"], e["box"], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(g["label_scores"], e["label_scores"], atol=1e-5, rtol=1e-5)


def test_exported_retinanet_names_a_wrong_output():
    net = retinanet(**TINY)
    wrapped = ExportedRetinaNet(lambda x: (x,), net)  # e.g. an ONNX file loaded without output_keys
    with pytest.raises(ValueError, match="output_keys"):
        wrapped(torch.rand(1, 3, 32, 32))


def test_training_step_without_torchvision():
    """MONAI's detector trains (ATSS + hard-negative sampler) with the placeholders of the missing torchvision types."""
    assert patch_missing_torchvision() == []  # done on import; idempotent
    assert isinstance(monai_detector.Matcher, type) and isinstance(monai_detector.BalancedPositiveNegativeSampler, type)
    torch.manual_seed(0)
    detector = build_detector(retinanet(**TINY), anchor_sizes=(8, 16, 32, 64))
    optimizer = torch.optim.Adam(detector.network.parameters(), 1e-3)
    before = {k: v.clone() for k, v in detector.network.state_dict().items()}
    detector.train()
    losses = detector(torch.rand(2, 3, 64, 64), _targets())
    assert set(losses) == {"classification", "box_regression"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    (losses["classification"] + losses["box_regression"]).backward()
    optimizer.step()
    assert not torch.equal(before["regression_head.bbox_reg.weight"], detector.network.state_dict()[
        "regression_head.bbox_reg.weight"])
    detector.eval()
    with torch.no_grad():
        results = detector(torch.rand(2, 3, 64, 64))
    assert len(results) == 2 and all(set(r) == {"box", "label", "label_scores"} for r in results)
    if not HAS_TORCHVISION:
        with pytest.raises(OptionalImportError, match="torchvision"):
            detector.set_regular_matcher(0.5, 0.4)


@pytest.mark.skipif(HAS_TORCHVISION, reason="the placeholders are only installed without torchvision")
def test_without_the_placeholders_monai_cannot_train(monkeypatch):
    for name in ("Matcher", "BalancedPositiveNegativeSampler"):
        monkeypatch.setattr(monai_detector, name, optional_import("torchvision.models.detection._utils", name=name)[0])
    torch.manual_seed(0)
    detector = build_detector(retinanet(**TINY), anchor_sizes=(8, 16, 32, 64)).train()
    with pytest.raises(Exception, match="torchvision"):  # MONAI's unresolved optional import raises on isinstance
        detector(torch.rand(2, 3, 64, 64), _targets())


@pytest.mark.parametrize("freeze_fpn", [False, True])
def test_frozen_backbone_gets_no_gradients_and_keeps_its_statistics(freeze_fpn):
    torch.manual_seed(0)
    net = retinanet(**TINY, freeze_backbone=True, freeze_fpn=freeze_fpn)
    detector = build_detector(net, anchor_sizes=(8, 16, 32, 64)).train()
    body = net.feature_extractor.body
    assert not body.training and not body.bn1.training and net.classification_head.training  # BN statistics frozen
    stats = body.bn1.running_mean.clone()
    losses = detector(torch.rand(2, 3, 64, 64), _targets())
    (losses["classification"] + losses["box_regression"]).backward()
    assert all(p.grad is None and not p.requires_grad for p in body.parameters())
    torch.testing.assert_close(body.bn1.running_mean, stats)
    assert all((p.grad is None) == freeze_fpn for p in net.feature_extractor.fpn.parameters())
    assert all(p.grad is not None for p in net.classification_head.parameters())
    assert all(p.grad is not None for p in net.regression_head.parameters())


def _monai_resnet(in_channels: int = 3, layers=(1, 1, 1, 1), widths=(8, 16, 16, 16)) -> ResNet:
    return ResNet("basic", list(layers), list(widths), spatial_dims=2, n_input_channels=in_channels,
                  conv1_t_size=7, conv1_t_stride=2, feed_forward=True, num_classes=5, bias_downsample=False)


def test_pretrained_path_loads_monai_torchvision_style_weights(tmp_path):
    torch.manual_seed(1)
    source = _monai_resnet()
    state = source.state_dict()
    assert "fc.weight" in state and "layer4.0.conv1.weight" in state
    # a DataParallel-saved checkpoint nested under "state_dict" (MedicalNet's form); fc and layer4 are ignored
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "resnet10.pth")
    torch.manual_seed(2)
    net = retinanet(**TINY, pretrained_path=str(tmp_path / "resnet10.pth"))
    body = net.feature_extractor.body.state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv2.weight", "layer3.0.downsample.0.weight"):
        torch.testing.assert_close(body[key], state[key])
    # a detector checkpoint's body (feature_extractor.body. prefix) and a 3-channel stem into a 1-channel network
    torch.save(net.state_dict(), tmp_path / "detector.pt")
    gray = retinanet(**TINY, in_channels=1, pretrained_path=str(tmp_path / "detector.pt"))
    torch.testing.assert_close(gray.feature_extractor.body.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    with pytest.raises(RuntimeError, match="wider.pth"):
        torch.save(_monai_resnet(widths=(16, 16, 16, 16)).state_dict(), tmp_path / "wider.pth")
        retinanet(**TINY, pretrained_path=str(tmp_path / "wider.pth"))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        retinanet(**TINY, pretrained_path=str(tmp_path / "missing.pth"))


def test_anchor_aspect_ratios_are_height_over_width_and_levels_must_fit():
    detector = build_detector(retinanet(**TINY), anchor_sizes=(32, 64, 128, 256), aspect_ratios=(0.5, 0.75, 1.0))
    anchors = detector.anchor_generator.cell_anchors[0]  # zero-centred [r0, c0, r1, c1] of size 32
    heights, widths = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    # h / w = 0.5: 32 * sqrt(0.5) = 22.6 tall (rounded half-extents 11), 32 / sqrt(0.5) = 45.3 wide (23)
    assert heights.tolist() == [22.0, 28.0, 32.0] and widths.tolist() == [46.0, 36.0, 32.0]
    assert [tuple(c.shape) for c in detector.anchor_generator.cell_anchors] == [(3, 4)] * 4
    assert detector.target_box_key == "box" and detector.target_label_key == "label"
    assert detector.box_selector.score_thresh == 0.05 and detector.box_selector.nms_thresh == 0.5
    with pytest.raises(ValueError, match="5 levels but the network has 4"):
        build_detector(retinanet(**TINY), anchor_sizes=(32, 64, 128, 256, 512))
    with pytest.raises(ValueError, match="num_anchors=3"):
        build_detector(retinanet(**TINY), anchor_sizes=(32, 64, 128, 256), aspect_ratios=(0.5, 1.0))
