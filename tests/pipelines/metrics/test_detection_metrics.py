"""Detection metrics: COCO values equal pycocotools' COCOeval on random boxes (several images, some without truth or
without detection, several seeds), FROC and the selection score on hand-made examples, bootstrap CIs, the Cumulative
metric (batches, DDP) and its ignite handler on a fake engine."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou
from monai.metrics.froc import compute_froc_curve_data
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import pipelines.metrics.detection as detection_module
from pipelines.metrics.detection import (
    DETECTION_METRICS,
    DetectionEvaluation,
    DetectionMetric,
    DetectionMetricsHandler,
    _froc_curve_sorted,
    box_iou_exact,
    detection_metrics,
    detection_report,
)

COCO_KEYS = ("map", "ap50", "ap75", "mar_1", "mar_10", "mar")
COCO_STATS = (0, 1, 2, 6, 7, 8)  # COCOeval.stats: AP, AP50, AP75, AR@1, AR@10, AR@100 (area all)


def _random_set(seed: int, n_images: int = 12, integer: bool = False):
    """Per-image boxes ``[r0, c0, r1, c1]``: every 4th image without truth, every 5th from the 2nd without detection;
    the first detections of an image jitter its truth boxes (so every IoU threshold has matches), the rest anywhere."""
    rng = np.random.default_rng(seed)
    preds, scores, truths = [], [], []

    def boxes(n):
        centre, size = rng.uniform(10, 90, (n, 2)), rng.uniform(8, 40, (n, 2))
        return np.concatenate([centre - size / 2, centre + size / 2], axis=1)

    for i in range(n_images):
        n_gt = 0 if i % 4 == 0 else int(rng.integers(1, 4))
        n_pred = 0 if i % 5 == 1 else int(rng.integers(1, 11))
        gt, pred = boxes(n_gt), boxes(n_pred)
        k = min(n_gt, n_pred)
        if k:
            q = gt[:k] + rng.normal(0, 1.5, (k, 4))
            pred[:k] = np.concatenate([np.minimum(q[:, :2], q[:, 2:]), np.maximum(q[:, :2], q[:, 2:])], axis=1)
        if integer:
            gt, pred = np.round(gt), np.round(pred)
        truths.append(gt)
        preds.append(pred)
        score = rng.uniform(0.01, 0.8, n_pred)
        score[:k] = rng.uniform(0.3, 1.0, k)  # the jittered truths score higher on the whole
        scores.append(score)
    return preds, scores, truths


def _cocoeval_stats(preds, scores, truths) -> np.ndarray:
    """pycocotools' COCOeval (bbox) of the same boxes: ``[x, y, w, h]`` with x = column, ids from 1."""
    images = [{"id": i + 1, "width": 128, "height": 128} for i in range(len(truths))]
    annotations, detections = [], []
    for i, gt in enumerate(truths):
        for r0, c0, r1, c1 in gt:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "bbox": [c0, r0, c1 - c0, r1 - r0], "area": (c1 - c0) * (r1 - r0), "iscrowd": 0})
    for i, (pred, score) in enumerate(zip(preds, scores)):
        for (r0, c0, r1, c1), s in zip(pred, score):
            detections.append({"image_id": i + 1, "category_id": 1, "bbox": [c0, r0, c1 - c0, r1 - r0],
                               "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "lesion"}]}
        gt_api.createIndex()
        evaluator = COCOeval(gt_api, gt_api.loadRes(detections), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("integer", [False, True])
def test_coco_metrics_equal_pycocotools(seed, integer):
    preds, scores, truths = _random_set(seed, integer=integer)
    assert any(len(t) == 0 for t in truths) and any(len(p) == 0 for p in preds)
    ours = detection_metrics(preds, scores, truths)
    stats = _cocoeval_stats(preds, scores, truths)
    assert stats[1] > 0.2 and stats[0] < 0.9  # neither degenerate nor perfect
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], stats[list(COCO_STATS)], rtol=0, atol=1e-6)
    # torch tensors in, same numbers
    as_tensors = detection_metrics([torch.as_tensor(p) for p in preds], [torch.as_tensor(s) for s in scores],
                                   [torch.as_tensor(t) for t in truths])
    assert [as_tensors[k] for k in COCO_KEYS] == [ours[k] for k in COCO_KEYS]


def test_plain_monai_coco_metric_differs_from_pycocotools():
    """Why ExactCOCOMetric exists: MONAI's float32 counts pick another precision at a recall threshold (seed 5)."""
    preds, scores, truths = _random_set(5)
    metric = COCOMetric(classes=["lesion"], iou_list=(0.5, 0.75), iou_range=(0.5, 0.95, 0.05),
                        max_detection=(1, 10, 100), per_class=False, verbose=False)
    zeros = [np.zeros(len(b)) for b in preds]
    results, _ = metric(matching_batch(box_iou_exact, metric.iou_thresholds, preds, zeros, scores, truths,
                                       [np.zeros(len(t)) for t in truths]))
    stats = _cocoeval_stats(preds, scores, truths)
    assert abs(results["mAP_IoU_0.50_0.95_0.05_MaxDet_100"] - stats[0]) > 1e-3
    assert abs(detection_metrics(preds, scores, truths)["map"] - stats[0]) < 1e-6


def test_iou_exactly_at_threshold_matches():
    """Integer boxes with IoU exactly 0.5 and 0.65 match at those thresholds, as in pycocotools (MONAI's float32
    box_iou gives 0.6499999762 for 13/20: the second detection would miss at 0.65)."""
    truths = [np.array([[0, 0, 10, 10]]), np.array([[0, 0, 20, 20]])]
    preds = [np.array([[0, 0, 10, 5]]), np.array([[0, 0, 20, 13]])]  # IoU 50/100 and 260/400
    scores = [np.array([0.9]), np.array([0.8])]
    np.testing.assert_array_equal(box_iou_exact(preds[1], truths[1]), [[0.65]])
    assert box_iou(preds[1].astype(float), truths[1].astype(float))[0, 0] < 0.65
    values = detection_metrics(preds, scores, truths)
    assert values["ap50"] == pytest.approx(1.0)
    # at IoU 0.55, 0.6, 0.65 only the second image's truth is found, at rank 2: precision 1/2 up to recall 1/2, i.e.
    # on 51 of the 101 recall thresholds; none from 0.7 on
    assert values["map"] == pytest.approx((1.0 + 3 * 51 * 0.5 / 101) / 10)
    assert values["ap75"] == 0.0
    stats = _cocoeval_stats(preds, scores, truths)
    np.testing.assert_allclose([values[k] for k in COCO_KEYS], stats[list(COCO_STATS)], rtol=0, atol=1e-12)


def test_selection_score_hand_made():
    truths = [
        np.array([[0, 0, 10, 10]]),  # A: TP, the 0.9 detection (IoU 0.5); the 0.4 one is below the cutoff
        np.zeros((0, 4)),  # B: FP
        np.array([[0, 0, 10, 10]]),  # C: FN (0.45 is not above the cutoff)
        np.zeros((0, 4)),  # D: TN (detection below the cutoff), excluded
        np.array([[0, 0, 4, 4], [10, 10, 20, 20]]),  # E: TP, best truth of the 0.8 detection: IoU 0.8
        np.array([[50, 50, 60, 60]]),  # F: TP with IoU 0
    ]
    preds = [
        np.array([[0, 0, 10, 5], [0, 0, 10, 10]]), np.array([[5, 5, 9, 9]]), np.array([[0, 0, 10, 10]]),
        np.array([[1, 1, 3, 3]]), np.array([[0, 0, 4, 4], [10, 10, 20, 18]]), np.array([[0, 0, 10, 10]]),
    ]
    scores = [np.array([0.9, 0.4]), np.array([0.5]), np.array([0.45]), np.array([0.3]), np.array([0.7, 0.8]),
              np.array([0.95])]
    evaluation = DetectionEvaluation(preds, scores, truths)
    assert list(evaluation.outcomes) == ["TP", "FP", "FN", "TN", "TP", "TP"]
    np.testing.assert_allclose(evaluation.selected_iou, [0.5, 0, 0, 0, 0.8, 0])
    assert evaluation.metrics()["selection_score"] == pytest.approx((0.5 + 0.8 + 0.0) / 5)
    # over images 0 and 3 only (TP + TN): 0.5 / 1; twice image 1 (FP) and image 0: 0.5 / 3
    assert evaluation.metrics([0, 3])["selection_score"] == pytest.approx(0.5)
    assert evaluation.metrics([1, 1, 0])["selection_score"] == pytest.approx(0.5 / 3)
    assert evaluation.metrics([3])["selection_score"] == 1.0  # only TN: nothing to find, nothing found
    assert np.isnan(evaluation.metrics([])["selection_score"])
    # the cutoff is configurable: at 0.2 image D's detection is an FP and C's a TP with IoU 1
    lower = DetectionEvaluation(preds, scores, truths, score_threshold=0.2)
    assert lower.metrics()["selection_score"] == pytest.approx((0.5 + 1.0 + 0.8) / 6)


def test_froc_hand_made():
    truths = [np.array([[0, 0, 10, 10]]), np.array([[20, 20, 40, 40]]), np.zeros((0, 4)), np.zeros((0, 4))]
    preds = [
        np.array([[0, 0, 10, 10], [60, 60, 70, 70]]),  # hit (0.9), FP (0.8)
        np.array([[80, 80, 90, 90], [20, 20, 30, 30]]),  # FP (0.7), hit at IoU 100 / 400 = 0.25 (0.4)
        np.array([[5, 5, 9, 9]]),  # FP (0.6)
        np.zeros((0, 4)),
    ]
    scores = [np.array([0.9, 0.8]), np.array([0.7, 0.4]), np.array([0.6]), np.zeros(0)]
    values = detection_metrics(preds, scores, truths)
    # operating points (FP per image, sensitivity) by threshold: .9 (0, .5), .8 (.25, .5), .7 (.5, .5), .6 (.75, .5),
    # .4 (.75, 1): at 1/8 .. 1/2 FP/image 0.5, from 1 on 1.0 (the lowest score is an operating point)
    expected = {0.125: 0.5, 0.25: 0.5, 0.5: 0.5, 1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0}
    for fp, sens in expected.items():
        assert values[f"froc_{fp:g}"] == pytest.approx(sens), fp
    assert values["froc"] == pytest.approx(5.5 / 7)
    # at IoU 0.3 the 0.4 detection is an FP: sensitivity 0.5 everywhere
    strict = detection_metrics(preds, scores, truths, froc_iou=0.3)
    assert strict["froc"] == pytest.approx(0.5)
    # a second detection on a found lesion is an FP
    preds[0] = np.array([[0, 0, 10, 10], [60, 60, 70, 70], [0, 0, 10, 9]])
    scores[0] = np.array([0.9, 0.8, 0.85])
    dup = detection_metrics(preds, scores, truths)  # points .9 (0, .5), .85 (.25, .5), ..., .4 (1, 1)
    assert dup["froc_0.5"] == pytest.approx(0.5) and dup["froc_1"] == pytest.approx(1.0)
    assert dup["froc_0.125"] == pytest.approx(0.5) and values["froc_0.5"] == pytest.approx(0.5)


def test_froc_interpolates_between_operating_points():
    # image 1: truths A, B; hit A (0.9), FP (0.8), hit B and an FP tied at 0.6; image 2: nothing. Points over two
    # images: .9 (0, 1/2), .8 (1/2, 1/2), .6 (1, 1); at 3/4 FP/image the line between the last two: 3/4
    truths = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.zeros((0, 4))]
    preds = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30], [70, 70, 80, 80]]), np.zeros((0, 4))]
    scores = [np.array([0.9, 0.8, 0.6, 0.6]), np.zeros(0)]
    values = detection_metrics(preds, scores, truths, fp_rates=(0.25, 0.75, 1.0, 4.0))
    assert [values[k] for k in ("froc_0.25", "froc_0.75", "froc_1", "froc_4")] == pytest.approx([0.5, 0.75, 1, 1])
    assert values["froc"] == pytest.approx((0.5 + 0.75 + 1 + 1) / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sorted_froc_curve_equals_monai(seed):
    rng = np.random.default_rng(seed)
    fp = np.round(rng.uniform(0, 1, 60), 2)  # ties within and across the two arrays
    tp = np.concatenate([np.round(rng.uniform(0, 1, 25), 2), np.full(5, -np.inf)])
    for fp_probs in (fp, np.append(fp, -np.inf)):
        expected = compute_froc_curve_data(fp_probs, tp, 30, 9)
        got = _froc_curve_sorted(fp_probs, tp, 30, 9)
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, rtol=0, atol=0)
    preds, scores, truths = _random_set(seed)
    evaluation = DetectionEvaluation(preds, scores, truths)
    assert evaluation.metrics(fast=True) == evaluation.metrics()


def test_no_truth_gives_nan_and_empty_set():
    values = detection_metrics([np.array([[0, 0, 5, 5]])], [np.array([0.9])], [np.zeros((0, 4))])
    for k in ("map", "ap50", "mar", "froc", "froc_1"):
        assert np.isnan(values[k]), k
    assert values["selection_score"] == 0.0  # one FP
    assert set(detection_metrics([], [], [])) == set(DETECTION_METRICS)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one entry per image"):
        detection_metrics([np.zeros((0, 4))], [], [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="2 predicted boxes but 1 scores"):
        detection_metrics([np.ones((2, 4))], [np.ones(1)], [np.zeros((0, 4))])
    with pytest.raises(ValueError, match=r"gt_boxes\[0\].*maximum below its minimum"):
        detection_metrics([np.zeros((0, 4))], [np.zeros(0)], [np.array([[5, 5, 2, 8]])])
    with pytest.raises(ValueError, match="shape"):
        detection_metrics([np.ones((2, 3))], [np.ones(2)], [np.zeros((0, 4))])


def test_bootstrap_intervals():
    preds, scores, truths = _random_set(3, n_images=16)
    report = detection_report(preds, scores, truths, n_resamples=25, seed=7)
    again = detection_report(preds, scores, truths, n_resamples=25, seed=7)
    assert report["metrics"] == again["metrics"]  # seeded
    assert list(report["metrics"]) == list(DETECTION_METRICS)
    for key, entry in report["metrics"].items():
        assert entry["ci_low"] <= entry["value"] + 1e-12 and entry["value"] <= entry["ci_high"] + 1e-12, key
    assert report["metrics"]["map"]["ci_high"] > report["metrics"]["map"]["ci_low"]
    assert report["n_images"] == 16 and report["n_images_with_truth"] == sum(len(t) > 0 for t in truths)
    assert sum(report["outcomes"].values()) == 16
    # a resample is the metric of the resampled list: the same as building the evaluation on it
    evaluation = DetectionEvaluation(preds, scores, truths)
    idx = [3, 3, 0, 7, 5, 1, 1]
    direct = detection_metrics([preds[i] for i in idx], [scores[i] for i in idx], [truths[i] for i in idx])
    np.testing.assert_allclose(list(evaluation.metrics(idx).values()), list(direct.values()), atol=1e-12)
    none = detection_report(preds, scores, truths, n_resamples=0)
    assert np.isnan(none["metrics"]["map"]["ci_low"])


def test_cumulative_metric_over_batches_equals_one_call():
    preds, scores, truths = _random_set(1)
    metric = DetectionMetric()
    for start in range(0, 12, 5):  # uneven batches
        sl = slice(start, start + 5)
        metric([torch.as_tensor(p, dtype=torch.float32) for p in preds[sl]], scores[sl], truths[sl],
               case_ids=[f"img{i}" for i in range(12)[sl]])
    expected = detection_metrics([torch.as_tensor(p, dtype=torch.float32) for p in preds], scores, truths)
    got = metric.aggregate()
    np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-12)
    assert metric.case_ids() == [f"img{i}" for i in range(12)]
    pred_boxes, _, gt_boxes = metric.images()
    assert [len(b) for b in pred_boxes] == [len(p) for p in preds] and [len(b) for b in gt_boxes] == \
        [len(t) for t in truths]
    metric.reset()
    assert np.isnan(metric.aggregate()["map"]) and metric.case_ids() == []


def _engine_batches(preds, scores, truths, size=4):
    return [{"pred_box": [torch.as_tensor(p) for p in preds[s : s + size]],
             "pred_score": [torch.as_tensor(x) for x in scores[s : s + size]],
             "box": [torch.as_tensor(t) for t in truths[s : s + size]],
             "case_id": [f"case{i}" for i in range(s, min(s + size, len(truths)))]}
            for s in range(0, len(truths), size)]


def test_handler_on_a_fake_engine():
    preds, scores, truths = _random_set(2)
    engine = Engine(lambda engine, batch: batch)  # the evaluation step's output: the dict of per-image lists
    handler = DetectionMetricsHandler(key="ap50")
    handler.attach(engine, "val_det")
    engine.run(_engine_batches(preds, scores, truths))
    expected = detection_metrics(preds, scores, truths)
    assert engine.state.metrics["val_det"] == pytest.approx(expected["ap50"])
    for key, value in expected.items():
        assert engine.state.metrics[f"val_det_{key}"] == pytest.approx(value, nan_ok=True), key
    details = engine.state.metric_details["val_det"]
    assert details["case_ids"] == [f"case{i}" for i in range(12)]
    assert details["settings"]["score_threshold"] == 0.45
    # a second run starts afresh; decollated output (a list of per-image dicts) and CIs
    decollated = Engine(lambda engine, batch: [{k: batch[k][i] for k in batch} for i in range(len(batch["box"]))])
    with_ci = DetectionMetricsHandler(key="selection_score", n_resamples=10)
    with_ci.attach(decollated, "val_det")
    for _ in range(2):
        decollated.run(_engine_batches(preds, scores, truths, size=5))
        assert decollated.state.metrics["val_det"] == pytest.approx(expected["selection_score"])
        assert len(decollated.state.metric_details["val_det"]["case_ids"]) == 12
    assert decollated.state.metrics["val_det_map_ci_low"] <= expected["map"] <= \
        decollated.state.metrics["val_det_map_ci_high"]
    with pytest.raises(ValueError, match="key must be one of"):
        DetectionMetricsHandler(key="auc")


def test_rank_buffers_in_rank_order_give_the_whole_set(monkeypatch):
    """Under DDP MONAI's ``Cumulative`` gathers each rank's buffer and concatenates them in rank order, and the case ids
    follow in the same order (``gather_strings``): the concatenated buffers of two ranks (7 and 5 images) give the
    metrics of all twelve images."""
    preds, scores, truths = _random_set(4)
    ranks = [DetectionMetric(), DetectionMetric()]
    for metric, images in zip(ranks, (range(0, 7), range(7, 12))):
        for i in images:  # one image per call, as an evaluator's iterations
            metric([preds[i]], [scores[i]], [truths[i]], case_ids=[f"img{i}"])
    gathered = torch.cat([metric.get_buffer() for metric in ranks])
    ids = [c for metric in ranks for c in metric.case_ids()]
    monkeypatch.setattr(ranks[0], "get_buffer", lambda: gathered)
    monkeypatch.setattr(detection_module, "gather_strings", lambda values: ids)
    expected = detection_metrics(preds, scores, truths)
    np.testing.assert_allclose(list(ranks[0].aggregate().values()), list(expected.values()), atol=1e-12)
    assert ranks[0].case_ids() == [f"img{i}" for i in range(12)]
    assert ranks[1].aggregate() != expected  # one rank alone: other numbers
