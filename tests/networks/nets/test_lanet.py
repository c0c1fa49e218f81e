"""LA-Net and the backbone-only baseline: shapes, switches, weights, export, registry."""

from __future__ import annotations

import pytest
import torch

from networks.nets.lanet import LANet, ResNetClassifier, ResNetFeatures, split_outputs
from networks.registry import create_network, list_networks

# (image size, batch, expected map size)
SIZES = [(256, 2, 8), (512, 1, 16)]


@pytest.mark.parametrize("size,batch,map_size", SIZES)
def test_lanet_output_shapes(size, batch, map_size):
    torch.manual_seed(0)
    net = LANet(num_classes=2, backbone="resnet18", in_channels=1).eval()
    with torch.no_grad():
        out = net(torch.randn(batch, 1, size, size))
    assert set(out) == {"logits", "mask"}
    assert out["logits"].shape == (batch, 2)
    assert out["mask"].shape == (batch, 1, map_size, map_size)
    assert out["mask"].min() >= 0 and out["mask"].max() <= 1


@pytest.mark.parametrize("backbone,channels", [("resnet18", (64, 128, 256, 512)), ("resnet50", (256, 512, 1024, 2048))])
def test_backbone_stage_features(backbone, channels):
    net = ResNetFeatures(backbone, spatial_dims=2, in_channels=3).eval()
    assert net.out_channels == channels
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))]


def test_resnet50_lanet_and_three_channels():
    net = LANet(num_classes=3, backbone="resnet50", in_channels=3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out["logits"].shape == (1, 3) and out["mask"].shape == (1, 1, 2, 2)
    assert net.classifier.fc.in_features == 2048


def test_switches_change_parameters_and_outputs():
    torch.manual_seed(0)
    full = LANet().eval()
    names = set(dict(full.named_parameters()))
    assert any(".cam." in n for n in names) and any(".sam." in n for n in names)
    no_cam = LANet(use_cam=False).eval()
    no_sam = LANet(use_sam=False).eval()
    assert not any(".cam." in n for n in dict(no_cam.named_parameters()))
    assert any(".sam." in n for n in dict(no_cam.named_parameters()))
    assert not any(".sam." in n for n in dict(no_sam.named_parameters()))
    # SAM: 3 convs 2->8, 8->8, 8->1 with BN; CAM: C -> C/16 -> C
    sam = full.map_heads[0].sam.convs
    convs = [m for m in sam if isinstance(m, torch.nn.Conv2d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size) for c in convs]
    assert shapes == [(2, 8, (3, 3)), (8, 8, (3, 3)), (8, 1, (3, 3))]
    assert full.map_heads[3].cam.mlp[0].out_features == 512 // 16
    # same weights where shared -> different outputs
    x = torch.randn(1, 1, 64, 64)
    no_cam.load_state_dict(full.state_dict(), strict=False)
    no_sam.load_state_dict(full.state_dict(), strict=False)
    no_mam = LANet(use_mam=False).eval()
    no_mam.load_state_dict(full.state_dict())  # MAM has no parameters
    with torch.no_grad():
        ref, a, b, c = full(x), no_cam(x), no_sam(x), no_mam(x)
    assert not torch.allclose(ref["mask"], a["mask"]) and not torch.allclose(ref["mask"], b["mask"])
    torch.testing.assert_close(ref["mask"], c["mask"])  # mask still predicted the same way
    assert not torch.allclose(ref["logits"], c["logits"])
    # MAM by hand: classifier on f4 + M * f4
    with torch.no_grad():
        f4 = full.features(x)
        torch.testing.assert_close(full.classifier(f4 + ref["mask"] * f4), ref["logits"])
        torch.testing.assert_close(full.classifier(f4), c["logits"])


def test_every_parameter_gets_a_gradient():
    net = LANet(use_mam=False).train()
    out = net(torch.randn(2, 1, 32, 32))
    (out["logits"].sum() + out["mask"].sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


def test_init_of_lanet_layers():
    net = LANet()
    bn = net.fuse[1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert net.classifier.fc.bias.abs().sum() == 0


def test_backbone_weights_round_trip_and_missing_file(tmp_path):
    torch.manual_seed(1)
    source = ResNetFeatures("resnet18", in_channels=1)
    state = {"module." + k: v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(10, 512)  # a classifier head is ignored
    path = tmp_path / "r18.pt"
    torch.save({"state_dict": state}, path)
    torch.manual_seed(2)
    net = LANet(backbone_weights=str(path))
    torch.testing.assert_close(net.backbone.conv1.weight, source.conv1.weight)
    with pytest.raises(FileNotFoundError, match="nowhere/r18.pt"):
        LANet(backbone_weights="/nowhere/r18.pt")
    with pytest.raises(RuntimeError, match="do not fit resnet18"):
        ResNetClassifier(in_channels=3, backbone_weights=str(path))


def test_baseline_classifier_and_split_outputs():
    net = ResNetClassifier(num_classes=2).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        logits = net(x)
        assert logits.shape == (2, 2) and net.features(x).shape == (2, 512, 1, 1)
    assert split_outputs(logits)[1] is None
    assert split_outputs({"logits": logits, "mask": x})[1] is x
    with pytest.raises(TypeError):
        split_outputs("logits")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_trace_export():
    net = LANet().eval()
    x = torch.randn(1, 1, 32, 32)
    traced = torch.jit.trace(net, x, strict=False, check_trace=False)
    with torch.no_grad():
        ref, out = net(x), traced(x)
    torch.testing.assert_close(out["logits"], ref["logits"])
    torch.testing.assert_close(out["mask"], ref["mask"])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown backbone 'resnet101'"):
        LANet(backbone="resnet101")
    with pytest.raises(ValueError, match="attention_kernel_size"):
        LANet(attention_kernel_size=4)
    with pytest.raises(ValueError, match="num_classes"):
        ResNetClassifier(num_classes=0)


def test_registered_on_import():
    assert {"lanet", "resnet_classifier"} <= set(list_networks())
    assert isinstance(create_network("lanet", backbone="resnet18"), LANet)
    assert isinstance(create_network("resnet_classifier"), ResNetClassifier)


def _reference_stage_cbam(head, x: torch.Tensor) -> torch.Tensor:
    """LA-Net's CBAM (before it became :class:`~networks.blocks.zoo.ConvBlockAttention`) by hand on a 2D input:
    CAM = x * sigmoid(mlp(avgpool) + mlp(maxpool)); SAM = x * sigmoid(conv-BN-ReLU, conv-BN-ReLU, conv-BN of
    [channel max, channel mean]), eval-mode batch norm with running statistics."""
    w1, b1, w2, b2 = (t.detach() for t in (head.cam.mlp[0].weight, head.cam.mlp[0].bias,
                                            head.cam.mlp[2].weight, head.cam.mlp[2].bias))

    def mlp(v):
        return torch.relu(v @ w1.T + b1) @ w2.T + b2

    avg, mx = x.mean(dim=(2, 3)), x.amax(dim=(2, 3))
    x = x * torch.sigmoid(mlp(avg) + mlp(mx))[:, :, None, None]
    h = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    convs = [m for m in head.sam.convs if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in head.sam.convs if isinstance(m, torch.nn.BatchNorm2d)]
    for i, (conv, bn) in enumerate(zip(convs, norms)):
        assert conv.bias is None
        h = torch.nn.functional.conv2d(h, conv.weight, padding=conv.kernel_size[0] // 2)
        h = (h - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps)
        h = h * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
        if i < len(convs) - 1:
            h = torch.relu(h)
    return x * torch.sigmoid(h)


def test_stage_cbam_is_the_shared_cbam_with_lanet_math_and_keys():
    from networks.blocks.zoo import ConvBlockAttention

    torch.manual_seed(4)
    net = LANet(reduction_ratio=4).eval()
    head = net.map_heads[0]
    assert isinstance(head, ConvBlockAttention)
    # the state-dict keys of LA-Net's CBAM before the merge
    keys = [k for k in net.state_dict() if k.startswith("map_heads.0.")]
    assert keys[:4] == ["map_heads.0.cam.mlp.0.weight", "map_heads.0.cam.mlp.0.bias",
                        "map_heads.0.cam.mlp.2.weight", "map_heads.0.cam.mlp.2.bias"]
    assert {k.split(".")[4] for k in keys if ".sam.convs." in k} == {"0", "1", "3", "4", "6", "7"}
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in head.sam.convs:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
        x = torch.randn(2, 64, 5, 6)
        torch.testing.assert_close(head.attend(x), _reference_stage_cbam(head, x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(head(x), head.squeeze(_reference_stage_cbam(head, x)), atol=1e-5, rtol=1e-4)
