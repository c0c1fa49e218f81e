"""The detection report: CSV rows (x = column), per-image outcomes, summary with CIs equal to the metric functions,
the FROC plot; written by the report handler after the metric handler on a fake ignite engine."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from pipelines.evaluation.detection import (
    DetectionReportHandler,
    write_detection_report,
)
from pipelines.metrics.detection import (
    DETECTION_METRICS,
    DetectionMetricsHandler,
    detection_metrics,
)

TRUTHS = [
    np.array([[0, 0, 10, 10]]),  # TP (IoU 0.5)
    np.zeros((0, 4)),  # FP
    np.array([[0, 0, 10, 10]]),  # FN (0.45 is not above the cutoff)
    np.zeros((0, 4)),  # TN
    np.array([[0, 0, 4, 4], [10, 10, 20, 20]]),  # TP (IoU 0.8)
]
PREDS = [
    np.array([[0, 0, 10, 5], [0, 0, 10, 10]]), np.array([[1, 2, 5, 9]]), np.array([[0, 0, 10, 10]]),
    np.zeros((0, 4)), np.array([[0, 0, 4, 4], [10, 10, 20, 18]]),
]
SCORES = [np.array([0.9, 0.4]), np.array([0.5]), np.array([0.45]), np.zeros(0), np.array([0.7, 0.8])]
IDS = ["a", "b", "c", "d", "e"]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_report(out_dir, summary):
    detections = _read_csv(out_dir / "detections.csv")
    assert len(detections) == 6
    # image a in decreasing score: the 0.9 box (IoU 0.5, selected, the FROC hit), then the 0.4 box (IoU 1, but its
    # truth is already taken by the 0.9 detection: a FROC false positive)
    a = [r for r in detections if r["case_id"] == "a"]
    assert [float(r["score"]) for r in a] == pytest.approx([0.9, 0.4])  # float32 in the engine test
    assert [float(r["iou"]) for r in a] == [0.5, 1.0]
    assert [int(r["froc_hit"]) for r in a] == [1, 0] and [int(r["selected"]) for r in a] == [1, 0]
    b = next(r for r in detections if r["case_id"] == "b")  # box [r0=1, c0=2, r1=5, c1=9]: x = column
    assert [float(b[k]) for k in ("x1", "y1", "x2", "y2")] == [2.0, 1.0, 9.0, 5.0]
    assert float(b["iou"]) == 0.0 and int(b["selected"]) == 1 and int(b["froc_hit"]) == 0
    e = [r for r in detections if r["case_id"] == "e"]
    assert [float(r["score"]) for r in e] == pytest.approx([0.8, 0.7]) and [int(r["selected"]) for r in e] == [1, 0]
    per_image = {r["case_id"]: r for r in _read_csv(out_dir / "per_image.csv")}
    assert [per_image[c]["outcome"] for c in IDS] == ["TP", "FP", "FN", "TN", "TP"]
    assert [int(per_image[c]["n_pred"]) for c in IDS] == [2, 1, 1, 0, 2]
    assert [int(per_image[c]["n_truth"]) for c in IDS] == [1, 0, 1, 0, 2]
    np.testing.assert_allclose([float(per_image[c]["best_iou"]) for c in IDS], [1, 0, 1, 0, 1])
    np.testing.assert_allclose([float(per_image[c]["selected_iou"]) for c in IDS], [0.5, 0, 0, 0, 0.8])
    assert per_image["c"]["selected_score"] == "nan"
    written = json.loads((out_dir / "summary.json").read_text())
    expected = detection_metrics(PREDS, SCORES, TRUTHS)
    assert list(written["metrics"]) == list(DETECTION_METRICS)
    for key, value in expected.items():
        assert written["metrics"][key]["value"] == pytest.approx(value), key
        assert summary["metrics"][key]["value"] == pytest.approx(value), key
    assert written["metrics"]["selection_score"]["value"] == pytest.approx(1.3 / 4)
    assert written["outcomes"] == {"TP": 2, "FP": 1, "FN": 1, "TN": 1}
    lo, hi = written["metrics"]["selection_score"]["ci_low"], written["metrics"]["selection_score"]["ci_high"]
    assert lo <= 1.3 / 4 <= hi and lo < hi
    markdown = (out_dir / "summary.md").read_text()
    assert "| mAP@[.5:.95] |" in markdown and "| sensitivity @ 0.125 FP/image |" in markdown
    assert "| selection score | 0.325 |" in markdown
    png = (out_dir / "froc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_write_detection_report(tmp_path):
    summary = write_detection_report(PREDS, SCORES, TRUTHS, tmp_path / "report", case_ids=IDS, n_resamples=30, seed=1)
    _check_report(tmp_path / "report", summary)
    assert summary["n_resamples"] == 30 and summary["settings"]["froc_iou"] == 0.1
    with pytest.raises(ValueError, match="4 case ids for 5 images"):
        write_detection_report(PREDS, SCORES, TRUTHS, tmp_path / "bad", case_ids=IDS[:4], n_resamples=0)


@pytest.mark.parametrize("by_name", [True, False])
def test_report_handler_after_the_metric_handler(tmp_path, by_name):
    batches = [
        {"pred_box": [torch.as_tensor(p, dtype=torch.float32) for p in PREDS[s : s + 2]],
         "pred_score": [torch.as_tensor(x, dtype=torch.float32) for x in SCORES[s : s + 2]],
         "box": [torch.as_tensor(t, dtype=torch.float32) for t in TRUTHS[s : s + 2]], "case_id": IDS[s : s + 2]}
        for s in range(0, 5, 2)
    ]
    engine = Engine(lambda engine, batch: batch)
    metric = DetectionMetricsHandler(key="selection_score")
    metric.attach(engine, "val_detection")
    out_dir = tmp_path / "eval"
    report = DetectionReportHandler(str(out_dir), metric_name="val_detection" if by_name else None,
                                    handler=None if by_name else metric, n_resamples=30, seed=1)
    report.attach(engine)
    engine.run(batches)
    assert engine.state.metrics["val_detection"] == pytest.approx(1.3 / 4)
    _check_report(out_dir, report.summary)
    assert "| AP50 |" in report.markdown()


def test_report_handler_needs_the_metric_details(tmp_path):
    engine = Engine(lambda engine, batch: batch)
    DetectionReportHandler(str(tmp_path), metric_name="val_detection").attach(engine)
    with pytest.raises(KeyError, match="no metric details named 'val_detection'"):
        engine.run([0])
    with pytest.raises(ValueError, match="exactly one of metric_name and handler"):
        DetectionReportHandler(str(tmp_path))
