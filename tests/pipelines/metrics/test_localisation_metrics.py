"""pipelines.metrics.localisation: the LA-Net mask Dice / IoU metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from pipelines.metrics import MaskDiceMetric, mask_dice_iou

ROWS, COLS = 48, 64  # non-square: a transposed read has the wrong shape

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
