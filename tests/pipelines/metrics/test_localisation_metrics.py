"""pipelines.metrics.localisation: the LA-Net mask Dice / IoU (function, Cumulative metric, ignite handler, DDP)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ignite.engine import Engine

from pipelines.evaluation import LocalisationReportHandler
from pipelines.metrics import (
    MaskLocalisationHandler,
    MaskLocalisationMetrics,
    mask_dice_iou,
)

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


def _metric_batch(idx, has_mask, start=0):
    return {
        "mask_prob": torch.cat([DICE_CASES[i][1] for i in idx]),
        "mask": torch.cat([DICE_CASES[i][2] for i in idx]),
        "has_mask": torch.tensor(has_mask),
        "case_id": [f"img{start + k}" for k in range(len(idx))],
    }


METRIC_CASES = [  # (id, kind, batches, expected mean over has_mask = 1)
    # batch 1: half overlap (0.5), an unannotated image that would score 1 (both empty) -> ignored;
    # batch 2: annotated empty GT with a false positive (0), exact (1)
    ("dice", "dice", [([0, 4], [1, 0]), ([5, 2], [1, 1])], (0.5 + 0.0 + 1.0) / 3),
    ("iou", "iou", [([0, 4], [1, 0]), ([5, 2], [1, 1])], (1 / 3 + 0.0 + 1.0) / 3),
    ("unannotated_batch_skipped", "dice", [([0], [1]), ([4, 5], [0, 0])], 0.5),
    ("nothing_annotated", "iou", [([4, 5], [0, 0])], float("nan")),
]


def _engine_with(handler, name="m"):
    engine = Engine(lambda _engine, batch: batch)  # the output is the batch dict, as LANetEvalStep's
    handler.attach(engine, name)
    return engine


@pytest.mark.parametrize("kind,batches,expected", [c[1:] for c in METRIC_CASES], ids=[c[0] for c in METRIC_CASES])
def test_localisation_handler_on_engine(kind, batches, expected):
    handler = MaskLocalisationHandler(kind, case_id_transform=lambda batch: batch["case_id"])
    engine = _engine_with(handler)
    data = [_metric_batch(*b, start=10 * k) for k, b in enumerate(batches)]
    for _ in range(2):  # a second run must not carry the first run's values
        state = engine.run(data)
        value = state.metrics["m"]
        if math.isnan(expected):
            assert math.isnan(value) and state.metric_details["m"] == []
        else:
            assert value == pytest.approx(expected)
            rows = state.metric_details["m"]
            annotated = [(10 * k + j) for k, (_, flags) in enumerate(batches) for j, f in enumerate(flags) if f]
            assert [r["case_id"] for r in rows] == [f"img{i}" for i in annotated]
            assert np.mean([r[kind] for r in rows]) == pytest.approx(expected)


def test_cumulative_metric_rows_threshold_and_no_prediction():
    metric = MaskLocalisationMetrics()
    metric(DICE_CASES[0][1], DICE_CASES[0][2], has_mask=torch.tensor([1]))
    metric(DICE_CASES[1][1], DICE_CASES[1][2])  # no flags: annotated; the metric's threshold (0.5) applies
    metric(DICE_CASES[4][1], DICE_CASES[4][2], has_mask=[0])
    assert metric.aggregate() == pytest.approx({"dice": 0.5, "iou": 1 / 3, "n": 2})
    assert metric.per_case(["a", "b", "c"]) == [{"case_id": "a", "dice": 0.5, "iou": pytest.approx(1 / 3)},
                                                {"case_id": "b", "dice": 0.5, "iou": pytest.approx(1 / 3)}]
    with pytest.raises(ValueError, match="case ids"):
        metric.per_case(["a"])
    strict = MaskLocalisationMetrics(threshold=0.6)
    strict(DICE_CASES[1][1], DICE_CASES[1][2])
    assert strict.aggregate()["dice"] == pytest.approx(3 / 7) and strict.aggregate()["iou"] == pytest.approx(6 / 22)
    empty = MaskLocalisationMetrics()
    assert math.isnan(empty.aggregate()["dice"]) and empty.aggregate()["n"] == 0
    with pytest.raises(ValueError, match="has_mask"):
        empty(DICE_CASES[0][1], DICE_CASES[0][2], has_mask=[1, 1])

    handler = MaskLocalisationHandler()
    engine = _engine_with(handler)
    state = engine.run([dict(_metric_batch([0], [1]), mask_prob=None)])  # a classifier without a mask
    assert math.isnan(state.metrics["m"])
    with pytest.raises(ValueError, match="kind"):
        MaskLocalisationHandler("hausdorff")


# Under DDP each rank sees part of the images; the handler must report the mean over all of them on every rank.
WORLD = 2
RANK_BATCHES = {0: [([0, 4], [1, 0])], 1: [([5, 2], [1, 1]), ([2], [1])]}  # uneven: 2 images on rank 0, 3 on rank 1
# annotated: half overlap 0.5 (rank 0); FP on empty GT 0, exact 1, exact 1 (rank 1)
DDP_DICE = (0.5 + 0.0 + 1.0 + 1.0) / 4


def _ddp_evaluation(rank: int, out_dir: str) -> dict:
    """One rank's evaluation: the handler, the CSV report, this rank's batches."""
    handler = MaskLocalisationHandler("dice", case_id_transform=lambda batch: batch["case_id"])
    engine = _engine_with(handler, "val_mask_dice")
    report = LocalisationReportHandler(os.path.join(out_dir, f"report{rank}"), "val_mask_dice")
    report.attach(engine)
    state = engine.run([_metric_batch(*b, start=100 * rank + 10 * k) for k, b in enumerate(RANK_BATCHES[rank])])
    return {"dice": state.metrics["val_mask_dice"], "rows": state.metric_details["val_mask_dice"],
            "section": report.section}


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(_ddp_evaluation(rank, out_dir)))
    finally:
        dist.destroy_process_group()


def test_localisation_handler_gathers_every_rank(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    expected_ids = ["img0", "img100", "img101", "img110"]  # rank 0's, then rank 1's annotated images
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["dice"] == pytest.approx(DDP_DICE), got
        assert [r["case_id"] for r in got["rows"]] == expected_ids
        assert got["section"]["n"] == 4 and got["section"]["dice"] == pytest.approx(DDP_DICE)
    # only rank 0 writes the CSV, with every rank's images
    assert not (tmp_path / "report1").exists()
    with open(tmp_path / "report0" / "localisation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == expected_ids
    assert [float(r["dice"]) for r in rows] == pytest.approx([0.5, 0.0, 1.0, 1.0])
    # without the gather rank 0 would report 0.5 (its single annotated image), rank 1 2/3
    assert DDP_DICE == pytest.approx(0.625)
