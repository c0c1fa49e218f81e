from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipelines.losses import DiceBCELoss


def _dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    p = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    inter = (p * target).sum(dims)
    denom = p.sum(dims) + target.sum(dims)
    return (1 - (2 * inter + smooth) / (denom + smooth)).mean()


def test_equals_soft_dice_plus_per_channel_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, 4, generator=g)
    target = (torch.rand(2, 3, 5, 6, 4, generator=g) > 0.6).float()
    expected = _dice_loss(logits, target) + F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(DiceBCELoss()(logits, target), expected, atol=1e-5, rtol=1e-5)


def test_differs_from_softmax_cross_entropy_of_monai_dicece():
    # overlapping regions: a voxel can be in all channels; softmax CE cannot represent that, BCE can
    logits = torch.full((1, 3, 2, 2), 8.0)
    target = torch.ones(1, 3, 2, 2)
    assert DiceBCELoss(lambda_dice=0.0)(logits, target).item() < 1e-3


def test_rejects_softmax_and_label_maps():
    with pytest.raises(ValueError, match="softmax"):
        DiceBCELoss(softmax=True)
    with pytest.raises(ValueError, match="shaped like the input"):
        DiceBCELoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
