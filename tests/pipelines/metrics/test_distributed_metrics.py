"""The Cumulative metrics under DDP: two CPU processes (gloo) with an uneven share of the cases each gather every
case, so the aggregate equals the single-process one on all cases (AUC is not a mean of per-rank AUCs)."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipelines.metrics import ClassificationMetrics, SurfaceMetrics

WORLD = 2
SPLIT = {0: slice(0, 3), 1: slice(3, 5)}  # 3 cases on rank 0, 2 on rank 1
SPACING = (1.0, 0.8, 2.5)


def _cases() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = torch.zeros(5, 2, 12, 10, 8)
    gt[:, 0, 3:9, 2:8, 2:6] = 1
    gt[:, 1, 5:7, 4:6, 3:5] = 1
    pred = ((gt + 0.6 * torch.rand(gt.shape, generator=g)) > 0.8).float()
    pred[4, 1] = 0  # a missed structure: Dice 0, HD95 the diagonal, never NaN
    labels = torch.tensor([0, 1, 2, 1, 0])
    probs = torch.softmax(torch.randn(5, 3, generator=g) + 2 * torch.nn.functional.one_hot(labels, 3), dim=1)
    return pred, gt, probs, labels


def _metrics(rank_slice: slice) -> dict:
    pred, gt, probs, labels = _cases()
    seg = SurfaceMetrics(class_names=("a", "b"), tolerance_mm=1.0, spacing=SPACING)
    cls = ClassificationMetrics(class_names=("x", "y", "z"))
    for i in range(rank_slice.start, rank_slice.stop):  # one case per call, as an evaluator's iterations
        seg(y_pred=pred[i : i + 1], y=gt[i : i + 1])
        cls(probs[i : i + 1], labels[i : i + 1])
    return {"segmentation": seg.aggregate(), "classification": cls.aggregate(),
            "rows": len(seg.per_case()), "cases": int(cls.arrays()[0].shape[0])}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        result = _metrics(SPLIT[rank])
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_metrics_gather_every_case_across_ranks(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    expected = _metrics(slice(0, 5))
    assert expected["rows"] == expected["cases"] == 5
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["rows"] == got["cases"] == 5, got  # every rank sees all five cases
        for group in ("segmentation", "classification"):
            for key, value in expected[group].items():
                np.testing.assert_allclose(got[group][key], value, rtol=1e-9, atol=1e-12, err_msg=f"{group} {key}")
    assert not any(np.isnan(v) for v in expected["segmentation"].values())
    # without the gather, rank 0 alone would report other numbers on its three cases
    local = _metrics(SPLIT[0])
    assert local["rows"] == 3 and local["segmentation"] != expected["segmentation"]
