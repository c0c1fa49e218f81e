"""CAMClassifier: the split at the Grad-CAM layer, the cam_layer hook and local backbone weights."""

from __future__ import annotations

import re

import pytest
import torch
from monai.networks.nets import DenseNet121, ResNet

from networks import create_network
from networks.nets import CAMClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "backbone, kwargs, channels, grid",
    [
        ("resnet10", {}, 512, 2),
        ("resnet10", {"widen_factor": 0.125, "no_max_pool": True}, 64, 4),
        ("resnet18", {}, 512, 2),
        ("efficientnet-b0", {}, 1280, 2),
    ],
)
def test_features_classify_forward(backbone, kwargs, channels, grid):
    torch.manual_seed(0)
    net = CAMClassifier(3, backbone, **kwargs).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        features = net.features(x)
        assert features.shape == (2, channels, grid, grid) and net.feature_channels == channels
        logits = net.classify(features)
        torch.testing.assert_close(net(x), logits)
        # classify = global average pooling + linear
        torch.testing.assert_close(logits, features.mean((2, 3)) @ net.fc.weight.T + net.fc.bias)


def test_cam_layer_hook_gives_the_features():
    net = CAMClassifier(2, "resnet10").eval()
    captured = []
    handle = net.get_submodule(net.cam_layer).register_forward_hook(lambda m, i, o: captured.append(o))
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        net(x)
        handle.remove()
        torch.testing.assert_close(captured[0], net.features(x))


def test_registered_with_defaults():
    net = create_network("cam_classifier", backbone="resnet10")
    assert isinstance(net, CAMClassifier) and net.fc.out_features == 2 and net.in_channels == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        CAMClassifier(2, "vgg16")
    with pytest.raises(ValueError, match="num_classes"):
        CAMClassifier(0, "resnet10")


def test_rgb_resnet_weights_load_into_one_channel(tmp_path):
    torch.manual_seed(0)
    rgb = ResNet("basic", [1, 1, 1, 1], [64, 128, 256, 512], spatial_dims=2, n_input_channels=3, conv1_t_size=7,
                 conv1_t_stride=2, bias_downsample=False, num_classes=10)
    path = tmp_path / "resnet10_rgb.pt"
    torch.save({"state_dict": rgb.state_dict()}, path)
    net = CAMClassifier(2, "resnet10", pretrained_path=str(path))
    torch.testing.assert_close(net.backbone.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(net.backbone.layer4[0].conv2.weight, rgb.layer4[0].conv2.weight)
    assert not torch.equal(net.fc.weight[:, :2], rgb.fc.weight[:2, :2])  # the classifier is not loaded


def test_torchvision_densenet_names_load(tmp_path):
    monai_net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=5)
    pattern = re.compile(r"^(.*denselayer\d+)\.layers\.((?:norm|relu|conv)[12]\..*)$")
    torchvision_state = {pattern.sub(r"\1.\2", k): v for k, v in monai_net.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm1.weight" in torchvision_state
    path = tmp_path / "densenet121.pth"
    torch.save(torchvision_state, path)
    net = CAMClassifier(2, "densenet121", pretrained_path=str(path))
    torch.testing.assert_close(net.backbone.features.conv0.weight, monai_net.features.conv0.weight)


def test_weight_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        CAMClassifier(2, "resnet10", pretrained_path=str(tmp_path / "missing.pt"))
    path = tmp_path / "resnet18.pt"
    torch.save(CAMClassifier(2, "resnet18").state_dict(), path)
    with pytest.raises(RuntimeError, match=r"resnet18\.pt.*resnet10 backbone"):
        CAMClassifier(2, "resnet10", pretrained_path=str(path))
