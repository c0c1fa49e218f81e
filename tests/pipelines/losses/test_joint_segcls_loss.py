"""Joint segmentation + classification loss and the class weights, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines.losses.joint_segcls import JointSegClsLoss, class_weights

# two images of 2x2 pixels: image 0 has one lesion pixel, image 1 (a "normal" image) none
MASK = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
SEG = torch.zeros(2, 1, 2, 2)  # p = 0.5 everywhere
LOGITS = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, 0.0, 0.0]])  # p(class 0) = 1/2; uniform
LABEL = torch.tensor([0, 2])
WEIGHTS = [2.0, 2.0 / 3.0, 1.0]

# batch soft Dice: 1 - 2 * 0.5 / (8 * 0.5 + 1) = 0.8; sigmoid focal at p = 0.5: BCE ln 2 times (1 - p_t)^2 = 1/4,
# times alpha 0.25 on the one lesion pixel and 0.75 on the seven others, mean over 8 pixels
DICE = 0.8
FOCAL = math.log(2.0) * 0.25 * (0.25 + 7 * 0.75) / 8
# weighted CE: (w_0 ln 2 + w_2 ln 3) / (w_0 + w_2)
CE = (2.0 * math.log(2.0) + 1.0 * math.log(3.0)) / 3.0


def test_class_weights_by_hand():
    # N = 6, K = 3, counts (1, 3, 2): N / (K n_c) = 2, 2/3, 1
    w = class_weights([0, 1, 1, 1, 2, 2], 3)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor(WEIGHTS))
    torch.testing.assert_close(class_weights(torch.tensor([1, 0, 1, 0]), 2), torch.tensor([1.0, 1.0]))
    # BUSI: 780 images, normal 133, benign 437, malignant 210
    busi = class_weights([0] * 133 + [1] * 437 + [2] * 210, 3)
    torch.testing.assert_close(busi, torch.tensor([780 / 399, 780 / 1311, 780 / 630]))


@pytest.mark.parametrize(
    "labels,num_classes,match",
    [([0, 0, 2], 3, r"classes \[1\] have no sample"), ([0, 3], 3, r"\[0, 3\)"), ([], 2, "at least one label")],
)
def test_class_weights_errors(labels, num_classes, match):
    with pytest.raises(ValueError, match=match):
        class_weights(labels, num_classes)


def test_total_loss_by_hand():
    loss_fn = JointSegClsLoss(class_weight=WEIGHTS)
    outputs = {"seg": SEG, "logits": LOGITS}
    terms = loss_fn.terms(outputs, MASK, LABEL)
    assert float(terms["mask"]) == pytest.approx(DICE + FOCAL, abs=1e-5)
    assert float(terms["ce"]) == pytest.approx(CE, abs=1e-6)
    expected = 0.7 * (DICE + FOCAL) + 0.3 * CE
    assert float(terms["loss"]) == pytest.approx(expected, abs=1e-5)
    assert float(loss_fn(outputs, MASK, LABEL)) == pytest.approx(expected, abs=1e-5)
    # a MONAI trainer passes one target: a mapping with the mask and the class label
    assert float(loss_fn(outputs, {"mask": MASK, "label": LABEL})) == pytest.approx(expected, abs=1e-5)


def test_unweighted_ce_and_per_image_dice():
    loss_fn = JointSegClsLoss(dice_batch=False)
    terms = loss_fn.terms({"seg": SEG, "logits": LOGITS}, MASK, LABEL)
    assert float(terms["ce"]) == pytest.approx((math.log(2.0) + math.log(3.0)) / 2, abs=1e-6)
    # per image: 1 - 1/3 for image 0, ~1 for the empty image 1 (every predicted pixel is a false positive)
    assert float(terms["mask"]) == pytest.approx((2 / 3 + 1.0) / 2 + FOCAL, abs=1e-4)


def test_deep_supervision_averages_the_mask_terms():
    loss_fn = JointSegClsLoss()
    other = torch.full((2, 1, 2, 2), 3.0)
    deep = torch.stack([other, other], dim=1)  # (B, S=2, C, H, W)
    with_deep = loss_fn.terms({"seg": SEG, "logits": LOGITS, "seg_deep": deep}, MASK, LABEL)["mask"]
    main = loss_fn.mask_loss(SEG, MASK)
    side = loss_fn.mask_loss(other, MASK)
    assert float(with_deep) == pytest.approx(float(main + 2 * side) / 3, abs=1e-6)


def test_gradients_reach_both_heads_and_float32_under_autocast():
    seg = SEG.clone().requires_grad_(True)
    logits = LOGITS.clone().requires_grad_(True)
    loss_fn = JointSegClsLoss(class_weight=WEIGHTS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn({"seg": seg.bfloat16(), "logits": logits.bfloat16()}, MASK, LABEL)
    assert loss.dtype == torch.float32
    loss.backward()
    assert seg.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_term_weights_and_errors():
    outputs = {"seg": SEG, "logits": LOGITS}
    only_ce = JointSegClsLoss(seg_weight=0.0, cls_weight=1.0)
    assert float(only_ce(outputs, MASK, LABEL)) == pytest.approx((math.log(2.0) + math.log(3.0)) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="class labels"):
        JointSegClsLoss()(outputs, MASK)
    with pytest.raises(ValueError, match="does not match"):
        JointSegClsLoss()(outputs, MASK[:, :, :1], LABEL)
    with pytest.raises(ValueError, match="3 class labels for 2"):
        JointSegClsLoss()(outputs, MASK, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=">= 0"):
        JointSegClsLoss(seg_weight=-1.0)
    with pytest.raises(ValueError, match="one-dimensional"):
        JointSegClsLoss(class_weight=[[1.0, 2.0]])
