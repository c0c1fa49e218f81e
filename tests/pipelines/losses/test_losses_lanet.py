"""LA-Net losses: stage-1 mask loss and the stage-2 joint loss with pseudo labels, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.losses.lanet import LANetJointLoss, LANetMaskLoss, downsample_mask

# image 0: unannotated, mask probabilities on a 2x2 map; image 1: annotated with its 2x2 ground truth
MASK = torch.tensor([[[[0.9, 0.3], [0.85, 0.5]]], [[[0.6, 0.4], [0.2, 0.7]]]])
GT = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [0.0, 1.0]]]])  # image 0's GT must be ignored
HAS_MASK = torch.tensor([0, 1])
LABELS = torch.tensor([0, 1])

# by hand: annotated BCE terms -log(0.6), -log(1 - 0.4), -log(1 - 0.2), -log(0.7)
ANNOTATED = -(math.log(0.6) + math.log(0.6) + math.log(0.8) + math.log(0.7))
# pseudo label of image 0: T = 1[M >= 0.8] = [[1, 0], [1, 0]] -> -log(0.9), -log(0.7), -log(0.85), -log(0.5)
PSEUDO = -(math.log(0.9) + math.log(0.7) + math.log(0.85) + math.log(0.5))


def _ce(logits, labels):
    return sum(-math.log(math.exp(r[y]) / sum(math.exp(v) for v in r)) for r, y in zip(logits, labels)) / len(labels)


@pytest.mark.parametrize(
    "mode,logit0,gated",
    [
        ("class_confidence", [3.0, 0.0], True),  # p = 0.953 >= 0.8
        ("class_confidence", [0.5, 0.0], False),  # p = 0.622 < 0.8: no pseudo label
        ("mask_probability", [0.5, 0.0], True),  # gate on the mask probability only
    ],
)
def test_joint_loss_by_hand(mode, logit0, gated):
    logits = torch.tensor([logit0, [0.0, 1.0]])
    loss = LANetJointLoss(pseudo_mode=mode)
    parts = loss.compute(logits, MASK, LABELS, GT, HAS_MASK)
    mask_term = (ANNOTATED + (0.1 * PSEUDO if gated else 0.0)) / 8  # mean over all 2 * 2 * 2 elements
    assert parts["mask_loss"].item() == pytest.approx(mask_term, rel=1e-5)
    assert parts["ce"].item() == pytest.approx(_ce(logits.tolist(), LABELS.tolist()), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(parts["ce"].item() + mask_term, rel=1e-5)
    assert parts["pseudo_fraction"].item() == (0.5 if gated else 0.0)
    assert loss(logits, MASK, LABELS, GT, HAS_MASK).item() == pytest.approx(parts["loss"].item())


def test_require_correct_and_weights():
    logits = torch.tensor([[0.0, 3.0], [0.0, 1.0]])  # image 0: confident but wrong (label 0)
    loose = LANetJointLoss().compute(logits, MASK, LABELS, GT, HAS_MASK)
    strict = LANetJointLoss(require_correct=True).compute(logits, MASK, LABELS, GT, HAS_MASK)
    assert loose["pseudo_fraction"] == 0.5 and strict["pseudo_fraction"] == 0.0
    heavy = LANetJointLoss(mask_weight=2.0, pseudo_mask_weight=0.5).compute(logits, MASK, LABELS, GT, HAS_MASK)
    assert heavy["mask_loss"].item() == pytest.approx((ANNOTATED + 0.5 * PSEUDO) / 8, rel=1e-5)
    assert heavy["loss"].item() == pytest.approx(heavy["ce"].item() + 2 * heavy["mask_loss"].item(), rel=1e-5)


def test_pseudo_target_is_detached_and_gradient_flows_through_mask():
    mask = MASK.clone().requires_grad_(True)
    logits = torch.tensor([[3.0, 0.0], [0.0, 1.0]], requires_grad=True)
    LANetJointLoss().compute(logits, mask, LABELS, GT, HAS_MASK)["mask_loss"].backward()
    # d/dM of 0.1 * BCE(M, T) / 8 = 0.1 / 8 * (M - T) / (M (1 - M))
    expected = 0.1 / 8 * (0.9 - 1) / (0.9 * 0.1)
    assert mask.grad[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-4)
    assert logits.grad is None  # the gate does not backpropagate


def test_full_resolution_ground_truth_is_downsampled():
    gt = torch.zeros(1, 1, 4, 4)
    gt[0, 0, :2, :2] = 1  # bilinear 4 -> 2 averages 2x2 blocks
    torch.testing.assert_close(downsample_mask(gt, (2, 2)), torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    mask = torch.tensor([[[[0.6, 0.4], [0.2, 0.7]]]])
    expected = -(math.log(0.6) + math.log(0.6) + math.log(0.8) + math.log(0.3)) / 4
    assert LANetMaskLoss()(mask, gt).item() == pytest.approx(expected, rel=1e-5)


def test_stage1_loss_ignores_unannotated_images():
    loss = LANetMaskLoss()
    only_annotated = loss(MASK[1:], GT[1:]).item()
    assert only_annotated == pytest.approx(ANNOTATED / 4, rel=1e-5)
    assert loss(MASK, GT, HAS_MASK).item() == pytest.approx(only_annotated, rel=1e-6)
    other_gt = GT.clone()
    other_gt[0] = 0  # the unannotated image's (all-zero) mask does not matter
    assert loss(MASK, other_gt, [0, 1]).item() == pytest.approx(only_annotated, rel=1e-6)
    mask = MASK.clone().requires_grad_(True)
    none = loss(mask, GT, torch.tensor([0, 0]))
    none.backward()
    assert none.item() == 0.0 and mask.grad.abs().sum() == 0


def test_invalid_arguments():
    with pytest.raises(ValueError, match="pseudo_mode must be one of"):
        LANetJointLoss(pseudo_mode="entropy")
    with pytest.raises(ValueError, match="pseudo_conf"):
        LANetJointLoss(pseudo_conf=1.5)
    with pytest.raises(ValueError, match="has_mask has 3 entries"):
        LANetMaskLoss()(MASK, GT, [1, 1, 1])
    with pytest.raises(ValueError, match=r"\(B, 1, m, m\)"):
        LANetMaskLoss()(MASK[:, 0], GT)
