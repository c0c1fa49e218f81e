from __future__ import annotations

import csv

import numpy as np
import pytest
import surface_distance  # DeepMind's reference implementation, the test oracle (test extra)
import torch
from ignite.engine import Engine
from monai.data import MetaTensor, list_data_collate
from scipy import ndimage

from pipelines.evaluation import MetricsReportHandler
from pipelines.metrics import (
    PerChannelDice,
    SegmentationMetricsHandler,
    SurfaceMetrics,
    compute_segmentation_metrics,
    dice,
    dice_per_channel,
    hd95,
    image_diagonal_mm,
    nsd,
    spacing_from_meta,
)

# (seed, shape, spacing mm, NSD tolerance mm, blob smoothing: 0 = voxel noise, which hits every neighbourhood code)
ORACLE_CASES = [
    (0, (24, 20, 16), (0.8, 1.0, 2.5), 1.0, 1.5),
    (1, (24, 20, 16), (0.8, 1.0, 2.5), 2.0, 0.0),
    (2, (20, 18, 12), (1.0, 1.0, 1.0), 1.0, 2.0),
    (3, (40, 32), (0.7, 1.3), 1.5, 1.5),
    (4, (40, 32), (2.0, 0.5), 1.0, 0.0),
    (5, (30, 30), (1.0, 1.0), 2.0, 2.5),
]


def _blob(rng: np.random.Generator, shape, smooth: float) -> np.ndarray:
    x = rng.random(shape)
    if smooth:
        x = ndimage.gaussian_filter(x, smooth)
    return x > np.quantile(x, rng.uniform(0.5, 0.85))


def _oracle(pred: np.ndarray, gt: np.ndarray, spacing, tolerance: float) -> tuple[float, float, float]:
    sd = surface_distance.compute_surface_distances(gt, pred, spacing)
    return (
        float(surface_distance.compute_dice_coefficient(gt, pred)),
        float(surface_distance.compute_robust_hausdorff(sd, 95)),
        float(surface_distance.compute_surface_dice_at_tolerance(sd, tolerance)),
    )


@pytest.mark.parametrize("seed,shape,spacing,tolerance,smooth", ORACLE_CASES)
def test_metrics_match_surface_distance_oracle(seed, shape, spacing, tolerance, smooth):
    rng = np.random.default_rng(seed)
    pred, gt = _blob(rng, shape, smooth), _blob(rng, shape, smooth)
    expected = _oracle(pred, gt, spacing, tolerance)
    assert dice(pred, gt) == pytest.approx(expected[0], abs=1e-4)
    assert hd95(pred, gt, spacing) == pytest.approx(expected[1], abs=1e-4)
    assert nsd(pred, gt, spacing, tolerance) == pytest.approx(expected[2], abs=1e-4)
    # torch input and float masks give the same values
    assert hd95(torch.as_tensor(pred).float(), torch.as_tensor(gt), spacing) == pytest.approx(expected[1], abs=1e-4)


def test_multi_class_metrics_match_oracle_per_class():
    rng = np.random.default_rng(7)
    shape, spacing, names = (24, 20, 16), (0.8, 1.0, 2.5), ("TC", "WT", "ET")
    pred = np.stack([_blob(rng, shape, 1.5) for _ in names])
    gt = np.stack([_blob(rng, shape, 1.5) for _ in names])
    result = compute_segmentation_metrics(pred, gt, spacing, names, tolerance_mm=2.0)
    assert list(result) == [f"{m}_{c}" for c in names for m in ("dice", "hd95", "nsd")]
    for c, name in enumerate(names):
        d, h, n = _oracle(pred[c], gt[c], spacing, 2.0)
        assert result[f"dice_{name}"] == pytest.approx(d, abs=1e-4)
        assert result[f"hd95_{name}"] == pytest.approx(h, abs=1e-4)
        assert result[f"nsd_{name}"] == pytest.approx(n, abs=1e-4)


def test_identical_masks_are_perfect():
    rng = np.random.default_rng(3)
    mask = _blob(rng, (16, 14, 10), 1.5)
    assert (dice(mask, mask), hd95(mask, mask, (1, 1, 2)), nsd(mask, mask, (1, 1, 2), 0.0)) == (1.0, 0.0, 1.0)


def test_brats_image_diagonal_is_373_13():
    assert image_diagonal_mm((240, 240, 155), (1.0, 1.0, 1.0)) == pytest.approx(373.13, abs=5e-3)


@pytest.mark.parametrize("spatial", [(12, 10), (12, 10, 8)])
def test_both_empty(spatial):
    empty = np.zeros(spatial, bool)
    assert dice(empty, empty) == 1.0
    assert hd95(empty, empty, (1.0,) * len(spatial)) == 0.0
    assert nsd(empty, empty, (1.0,) * len(spatial), 1.0) == 1.0


@pytest.mark.parametrize("spatial,spacing", [((12, 10), (0.5, 2.0)), ((12, 10, 8), (0.8, 1.0, 2.5))])
@pytest.mark.parametrize("empty_side", ["pred", "gt"])
def test_one_empty(spatial, spacing, empty_side):
    empty, full = np.zeros(spatial, bool), np.zeros(spatial, bool)
    full[2:5, 3:6] = True
    pred, gt = (empty, full) if empty_side == "pred" else (full, empty)
    diagonal = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(spatial, spacing))))
    assert dice(pred, gt) == 0.0
    assert nsd(pred, gt, spacing, 1.0) == 0.0
    assert hd95(pred, gt, spacing) == pytest.approx(diagonal)
    result = compute_segmentation_metrics(pred[None], gt[None], spacing, ["x"])
    assert result == {"dice_x": 0.0, "hd95_x": pytest.approx(diagonal), "nsd_x": 0.0}
    assert not any(np.isnan(v) for v in result.values())


def test_bad_inputs_fail_loudly():
    a = np.zeros((8, 8), bool)
    with pytest.raises(ValueError, match="same shape"):
        dice(a, np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="spacing"):
        hd95(a, a, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="class names"):
        compute_segmentation_metrics(a[None], a[None], (1, 1), ["a", "b"])
    with pytest.raises(ValueError, match="metrics"):
        compute_segmentation_metrics(a[None], a[None], (1, 1), ["a"], metrics=("dice", "assd"))
    with pytest.raises(ValueError, match="no spacing"):
        SurfaceMetrics(class_names=["a"])(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def _meta(x: np.ndarray, spacing) -> MetaTensor:
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([5.0, -3.0, 1.0])
    return MetaTensor(torch.as_tensor(x).float(), affine=affine, meta={"filename_or_obj": "/data/case_x.nii.gz"})


def test_spacing_from_meta_reads_affine_and_pixdim():
    x = _meta(np.zeros((1, 4, 4, 4)), (0.8, 1.0, 2.5))
    assert spacing_from_meta(x.unsqueeze(0), 3) == [pytest.approx((0.8, 1.0, 2.5))]
    plain = torch.zeros(2, 1, 4, 4, 4)
    assert spacing_from_meta(plain, 3) is None
    assert spacing_from_meta(MetaTensor(plain, meta={"pixdim": [1, 2, 3, 4, 1, 1, 1, 1]}), 3)  # no affine set
    assert spacing_from_meta(MetaTensor(plain), 3) == [(1.0, 1.0, 1.0)] * 2  # MetaTensor's default identity affine


def test_surface_metrics_cumulative_reads_spacing_and_aggregates():
    rng = np.random.default_rng(11)
    names, spacings = ("a", "b"), [(0.8, 1.0, 2.5), (1.0, 1.0, 1.0), (2.0, 1.0, 0.5)]
    pairs = [(np.stack([_blob(rng, (12, 10, 8), 1.0) for _ in names]),
              np.stack([_blob(rng, (12, 10, 8), 1.0) for _ in names])) for _ in spacings]
    pairs[2][0][1] = False  # one missed structure: must count, not drop out
    metric = SurfaceMetrics(class_names=names, tolerance_mm=1.5)
    # a collated batch (as from a DataLoader) carries one affine per item; torch.stack would keep only the first
    metric(list_data_collate([_meta(p, s) for (p, _), s in zip(pairs[:2], spacings[:2])]),
           torch.stack([torch.as_tensor(g) for _, g in pairs[:2]]))
    metric(_meta(pairs[2][0], spacings[2]).unsqueeze(0), torch.as_tensor(pairs[2][1]).unsqueeze(0))
    expected = [compute_segmentation_metrics(p, g, s, names, tolerance_mm=1.5) for (p, g), s in zip(pairs, spacings)]
    rows = metric.per_case(["x", "y", "z"])
    assert [r["case_id"] for r in rows] == ["x", "y", "z"]
    for row, exp in zip(rows, expected):
        assert {k: v for k, v in row.items() if k != "case_id"} == pytest.approx(exp)
    means = metric.aggregate()
    for key in expected[0]:
        assert means[key] == pytest.approx(np.mean([e[key] for e in expected]))
    assert rows[2]["nsd_b"] == 0.0 and rows[2]["hd95_b"] == pytest.approx(image_diagonal_mm((12, 10, 8), spacings[2]))
    metric.reset()
    assert metric.get_buffer() is None


def test_handler_on_engine_writes_csv_equal_to_metric_functions(tmp_path):
    rng = np.random.default_rng(5)
    names, spacing = ("TC", "WT", "ET"), (0.8, 1.0, 2.5)
    cases = [(np.stack([_blob(rng, (12, 10, 8), 1.0) for _ in names]),
              np.stack([_blob(rng, (12, 10, 8), 1.0) for _ in names])) for _ in range(3)]
    # MONAI evaluators' decollated output: a list of per-item dicts, MetaTensors carrying the affine; two items in
    # the first iteration (ignite then calls update() once per item)
    items = [{"pred": _meta(p, spacing), "label": torch.as_tensor(g).float(), "case_id": f"BraTS_{i}"}
             for i, (p, g) in enumerate(cases)]
    batches = [items[:2], items[2:]]
    engine = Engine(lambda e, b: b)
    handler = SegmentationMetricsHandler(
        class_names=names,
        tolerance_mm=1.0,
        output_transform=lambda out: ([o["pred"] for o in out], [o["label"] for o in out]),
        case_id_transform=lambda batch: [item["case_id"] for item in batch],
    )
    handler.attach(engine, "val_mean_dice")
    report = MetricsReportHandler(save_dir=str(tmp_path), metric_name="val_mean_dice", n_resamples=200)
    report.attach(engine)
    engine.run(batches, max_epochs=1)

    expected = [compute_segmentation_metrics(p, g, spacing, names, tolerance_mm=1.0) for p, g in cases]
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == ["BraTS_0", "BraTS_1", "BraTS_2"]
    for row, exp in zip(rows, expected):
        for key, value in exp.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-9)
    state = engine.state
    assert state.metrics["val_mean_dice"] == pytest.approx(np.mean([e[f"dice_{c}"] for e in expected for c in names]))
    assert state.metrics["hd95_WT"] == pytest.approx(np.mean([e["hd95_WT"] for e in expected]))
    assert state.metric_details["val_mean_dice"][1]["case_id"] == "BraTS_1"
    assert all(name in report.table for name in names)


def test_handler_fixed_spacing_and_spacing_transform_agree():
    rng = np.random.default_rng(9)
    p, g = rng.random((1, 2, 10, 9, 7)) > 0.6, rng.random((1, 2, 10, 9, 7)) > 0.6
    results = []
    for kwargs in ({"spacing": (0.8, 1.0, 2.5)}, {"spacing_transform": lambda out: [(0.8, 1.0, 2.5)]}):
        engine = Engine(lambda e, b: b)
        SegmentationMetricsHandler(class_names=("a", "b"), metrics=("dice", "hd95"), **kwargs).attach(engine, "m")
        engine.run([(torch.as_tensor(p), torch.as_tensor(g))], max_epochs=1)
        results.append(dict(engine.state.metrics))
        assert engine.state.metric_details["m"][0]["case_id"] == "case_0000"
    assert results[0] == results[1]
    assert results[0]["hd95_b"] == pytest.approx(hd95(p[0, 1], g[0, 1], (0.8, 1.0, 2.5)))



def _dice_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Five cases, three channels: random overlaps plus both-empty and one-empty channels."""
    g = torch.Generator().manual_seed(0)
    pred = (torch.rand(5, 3, 9, 8, 6, generator=g) > 0.6).float()
    gt = (torch.rand(5, 3, 9, 8, 6, generator=g) > 0.5).float()
    pred[1, 1], gt[1, 1] = 0, 0  # both empty: 1
    pred[2, 2] = 0  # missed: 0
    gt[3, 0] = 0  # false positive: 0
    return pred, gt


def test_per_channel_dice_equals_the_dice_function_with_its_empty_convention():
    pred, gt = _dice_cases()
    expected = np.array([[dice(pred[b, c], gt[b, c]) for c in range(3)] for b in range(5)])
    assert expected[1, 1] == 1.0 and expected[2, 2] == 0.0 and expected[3, 0] == 0.0
    np.testing.assert_array_equal(dice_per_channel(pred, gt).numpy(), expected)  # bit for bit
    metric = PerChannelDice()
    for b in range(5):  # one case per call, as an evaluator's iterations
        metric(y_pred=pred[b : b + 1], y=gt[b : b + 1])
    np.testing.assert_allclose(metric.aggregate().numpy(), expected.mean(axis=0), rtol=0, atol=1e-15)
    # the Dice of the evaluation's SurfaceMetrics on the same cases
    surface = SurfaceMetrics(metrics=("dice",), spacing=(1.0, 1.0, 1.0))
    surface(y_pred=pred, y=gt)
    np.testing.assert_allclose(list(surface.aggregate().values()), expected.mean(axis=0), atol=1e-15)
    background_free = PerChannelDice(include_background=False)
    background_free(y_pred=pred, y=gt)
    np.testing.assert_allclose(background_free.aggregate().numpy(), expected[:, 1:].mean(axis=0), atol=1e-15)
    metric.reset()
    with pytest.raises(ValueError, match="before any data"):
        metric.aggregate()
    with pytest.raises(ValueError, match="same shape|one shape"):
        dice_per_channel(pred, gt[:, :2])


def _per_channel_dice_worker(rank: int, init_file: str, out_dir: str) -> None:
    import json
    import os

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        pred, gt = _dice_cases()
        metric = PerChannelDice()
        for b in ((0, 1, 2), (3, 4))[rank]:  # uneven shares: 3 cases on rank 0, 2 on rank 1
            metric(y_pred=pred[b : b + 1], y=gt[b : b + 1])
        result = {"mean": metric.aggregate().tolist(), "cases": int(metric.get_buffer().shape[0])}
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"dice_rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_per_channel_dice_gathers_every_case_across_ranks(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_per_channel_dice_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    pred, gt = _dice_cases()
    expected = dice_per_channel(pred, gt).mean(dim=0).numpy()
    local = dice_per_channel(pred[:3], gt[:3]).mean(dim=0).numpy()
    assert not np.allclose(local, expected)  # rank 0's own cases alone would give other numbers
    for rank in range(2):
        got = json.loads((tmp_path / f"dice_rank{rank}.json").read_text())
        assert got["cases"] == 5
        np.testing.assert_allclose(got["mean"], expected, rtol=0, atol=1e-12)
