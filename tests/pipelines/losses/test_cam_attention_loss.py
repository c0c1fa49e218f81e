"""Grad-CAM maps, the soft / hard Grad-CAM attention loss and the lambda schedule, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from networks.nets import CAMClassifier
from pipelines.losses import GradCAMAttentionLoss, attention_lambda, grad_cam_maps


def _linear_head():
    """Features (1, 2, 2, 2) and a GAP + linear head with hand-picked weights."""
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]]]], requires_grad=True)
    fc = nn.Linear(2, 3)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, -2.0], [5.0, 5.0]]))
        fc.bias.zero_()
    return features, fc(features.mean((2, 3)))


def test_grad_cam_by_hand():
    features, logits = _linear_head()
    # class 1: alpha = (1, -2) / 4 = (0.25, -0.5); 0.25 * A0 - 0.5 * A1 = [[0.25, 0], [0.25, 1]] (ReLU of 0.5 - 0.5 = 0)
    cam = grad_cam_maps(features, logits, torch.tensor([1]), create_graph=False, normalise=False)
    torch.testing.assert_close(cam, torch.tensor([[[0.25, 0.0], [0.25, 1.0]]]))
    # class 2: alpha = (1.25, 1.25): 1.25 * (A0 + A1) = [[1.25, 3.75], [5, 5]], normalised by 5
    cam = grad_cam_maps(features, logits, torch.tensor([2]), create_graph=False)
    torch.testing.assert_close(cam, torch.tensor([[[0.25, 0.75], [1.0, 1.0]]]), atol=1e-6, rtol=1e-6)
    # class 0: all-zero weights give an all-zero map, which normalisation keeps at zero
    cam = grad_cam_maps(features, logits, torch.tensor([0]), create_graph=False)
    assert torch.equal(cam, torch.zeros(1, 2, 2))


def test_grad_cam_upsampled_to_the_region_size():
    features, logits = _linear_head()
    cam = grad_cam_maps(features, logits, torch.tensor([1]), create_graph=False, normalise=False, size=(4, 4))
    assert cam.shape == (1, 4, 4)
    torch.testing.assert_close(cam[0, 0, 0], torch.tensor(0.25))  # corners keep the corner values
    torch.testing.assert_close(cam[0, 3, 3], torch.tensor(1.0))


def test_grad_cam_needs_a_graph():
    with pytest.raises(ValueError, match="enable_grad"):
        grad_cam_maps(torch.ones(1, 2, 2, 2), torch.ones(1, 3), torch.tensor([0]))


def test_soft_and_hard_loss_by_hand():
    cam = torch.tensor([[[0.25, 0.75], [1.0, 0.5]], [[1.0, 1.0], [1.0, 1.0]]])
    region = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])  # image 2: No Finding
    hard = GradCAMAttentionLoss(threshold=0.5, mode="hard", reduction="none").from_cam(cam, region)
    # region pixels 0.25, 0.75, 0.5: only 0.75 > 0.5 -> ratio 1/3, loss 2/3; the empty region -> 0
    torch.testing.assert_close(hard, torch.tensor([2 / 3, 0.0]))
    soft = GradCAMAttentionLoss(threshold=0.5, tau=0.1, reduction="none").from_cam(cam, region)

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-(v - 0.5) / 0.1))

    torch.testing.assert_close(soft, torch.tensor([1 - (sig(0.25) + sig(0.75) + sig(0.5)) / 3, 0.0]))
    mean = GradCAMAttentionLoss(threshold=0.5, tau=0.1).from_cam(cam, region)
    torch.testing.assert_close(mean, soft.sum() / 2)  # No Finding counts as 0 in the batch mean


def test_loss_resizes_the_cam():
    loss = GradCAMAttentionLoss(mode="hard")
    cam = torch.ones(1, 2, 2)
    region = torch.zeros(1, 1, 8, 8)
    region[..., 4:, :] = 1
    assert loss.from_cam(cam, region).item() == 0.0
    with pytest.raises(ValueError, match="region must be"):
        loss.from_cam(cam, region[:, 0])


def _attention_grads(mode: str):
    torch.manual_seed(0)
    net = CAMClassifier(2, "resnet10", widen_factor=0.125, no_max_pool=True)
    x = torch.randn(2, 1, 32, 32)
    region = torch.zeros(2, 1, 32, 32)
    region[0, :, 16:, 4:28] = 1
    features = net.features(x)
    loss = GradCAMAttentionLoss(mode=mode)(features, net.classify(features), torch.tensor([1, 0]), region)
    return net, loss


def test_soft_loss_gradient_reaches_the_backbone():
    net, loss = _attention_grads("soft")
    assert loss.requires_grad and 0 < loss.item() < 1
    loss.backward()
    for name in ("backbone.conv1.weight", "backbone.layer1.0.conv1.weight", "backbone.layer4.0.conv2.weight"):
        grad = net.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert net.fc.weight.grad.abs().sum() > 0  # through alpha (create_graph)


def test_hard_loss_has_no_gradient():
    _, loss = _attention_grads("hard")
    assert not loss.requires_grad and 0 <= loss.item() <= 1
    with pytest.raises(RuntimeError):  # nothing to back-propagate: the step carries no gradient, as the original
        loss.backward()


def test_attention_lambda():
    assert attention_lambda(0) == 1.0
    assert attention_lambda(10) == pytest.approx(0.77)
    assert attention_lambda(34) == pytest.approx(0.218)
    assert attention_lambda(35) == 0.2 and attention_lambda(99) == 0.2
    assert attention_lambda(3, "adaptive", slope=0.25, minimum=0.5) == 0.5
    assert attention_lambda(7, 0.5) == 0.5 and attention_lambda(7, "1.0") == 1.0
    for bad in ("fixed", 1.5, -0.1):
        with pytest.raises(ValueError):
            attention_lambda(0, bad)
    with pytest.raises(ValueError, match="0-based"):
        attention_lambda(-1)


def test_bad_loss_arguments():
    with pytest.raises(ValueError, match="mode"):
        GradCAMAttentionLoss(mode="numpy")
    with pytest.raises(ValueError, match="tau"):
        GradCAMAttentionLoss(tau=0)
