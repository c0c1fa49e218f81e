from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from pipelines.metrics import (
    ClassificationMetrics,
    ClassificationMetricsHandler,
    accuracy,
    balanced_accuracy,
    bootstrap_ci,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    f1_score,
    precision,
    roc_auc,
    roc_auc_per_class,
    sensitivity,
    specificity,
)

# Binary example with a tie between a positive and a negative score (0.4).
Y_BIN = np.array([0, 0, 0, 0, 1, 1, 1])
P_BIN = np.array([0.1, 0.4, 0.7, 0.6, 0.4, 0.8, 0.9])

# Three classes; class 1's score 0.3 is tied between a positive (row 4) and a negative (row 2).
Y_MC = np.array([0, 1, 2, 0, 1, 2])
P_MC = np.array(
    [[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.2, 0.3, 0.5], [0.45, 0.35, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]
)


def test_binary_auc_by_hand_with_ties():
    # positives {0.4, 0.8, 0.9}, negatives {0.1, 0.4, 0.7, 0.6}; pairs won (tie = 1/2):
    # 0.4: beats 0.1, ties 0.4 -> 1.5; 0.8 -> 4; 0.9 -> 4; AUC = 9.5 / (3 * 4)
    assert roc_auc(Y_BIN, P_BIN) == pytest.approx(9.5 / 12)
    # the same from (N, 2) probabilities and from torch
    assert roc_auc(torch.as_tensor(Y_BIN), np.stack([1 - P_BIN, P_BIN], 1)) == pytest.approx(9.5 / 12)
    # perfectly separated / reversed / all tied
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_binary_rates_f1_ece_by_hand():
    # predictions at 0.5: [0, 0, 1, 1, 0, 1, 1]
    # class 1: TP 2, FP 2, FN 1, TN 2; class 0: TP 2, FP 1, FN 2, TN 2
    assert confusion_matrix(Y_BIN, (P_BIN >= 0.5).astype(int)).tolist() == [[2, 2], [1, 2]]
    assert f1_score(Y_BIN, P_BIN, average=None) == pytest.approx([2 * 2 / (4 + 1 + 2), 2 * 2 / (4 + 2 + 1)])
    assert f1_score(Y_BIN, P_BIN) == pytest.approx(4 / 7)
    assert sensitivity(Y_BIN, P_BIN, average=None) == pytest.approx([2 / 4, 2 / 3])
    assert specificity(Y_BIN, P_BIN, average=None) == pytest.approx([2 / 3, 2 / 4])
    assert precision(Y_BIN, P_BIN, average=None) == pytest.approx([2 / 3, 2 / 4])
    assert accuracy(Y_BIN, P_BIN) == pytest.approx(4 / 7)
    assert balanced_accuracy(Y_BIN, P_BIN) == pytest.approx((2 / 4 + 2 / 3) / 2)
    # ECE, 4 bins of width 0.25. confidences max(p, 1-p) = [.9, .6, .7, .6, .6, .8, .9], correct = [1,1,0,0,0,1,1]
    # bin [0.5, 0.75): 4 cases, accuracy 1/4, mean confidence 2.5/4 -> |0.25 - 0.625| * 4/7
    # bin [0.75, 1]:   3 cases, accuracy 1,   mean confidence 2.6/3 -> |1 - 0.8667| * 3/7
    assert expected_calibration_error(Y_BIN, P_BIN, n_bins=4) == pytest.approx((4 * 0.375 + 3 * (1 - 2.6 / 3)) / 7)


def test_multiclass_auc_and_f1_by_hand():
    # one-vs-rest: class 0 positives {0.7, 0.45} vs {0.3, 0.2, 0.5, 0.1}: 4 + 3 = 7 of 8 pairs
    #              class 1 positives {0.5, 0.3} vs {0.2, 0.3, 0.35, 0.2}: 4 + (2 + 0.5) = 6.5 of 8
    #              class 2 positives {0.5, 0.7} vs {0.1, 0.2, 0.2, 0.2}: 8 of 8
    assert roc_auc_per_class(Y_MC, P_MC) == pytest.approx([7 / 8, 6.5 / 8, 1.0])
    assert roc_auc(Y_MC, P_MC) == pytest.approx((7 / 8 + 6.5 / 8 + 1) / 3)
    # argmax [0, 1, 2, 0, 0, 2]: class 0 TP 2 FP 1 FN 0; class 1 TP 1 FN 1; class 2 TP 2
    assert f1_score(Y_MC, P_MC, average=None) == pytest.approx([4 / 5, 2 / 3, 1.0])
    assert f1_score(Y_MC, P_MC) == pytest.approx((4 / 5 + 2 / 3 + 1) / 3)
    assert accuracy(Y_MC, P_MC) == pytest.approx(5 / 6)


def test_degenerate_cases_are_nan_not_errors():
    # a binary problem with one class only: AUC undefined -> NaN
    assert math.isnan(roc_auc([0, 0, 0], [0.1, 0.5, 0.9]))
    # class 2 absent: its AUC and sensitivity are NaN and macro means skip it
    y, p = Y_MC[Y_MC != 2], P_MC[Y_MC != 2]
    per_class = roc_auc_per_class(y, p)
    assert math.isnan(per_class[2])
    assert roc_auc(y, p) == pytest.approx(np.mean(per_class[:2]))
    assert math.isnan(sensitivity(y, p, average=None)[2])
    # everything predicted as class 1: class 0 is never predicted, its precision is 0 (not NaN); class 1's is 2/3
    assert precision([0, 1, 1], [0.9, 0.8, 0.7], average=None) == pytest.approx([0.0, 2 / 3])
    with pytest.raises(ValueError, match="labels"):
        roc_auc([0, 3], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="y_prob"):
        roc_auc([0, 1], [[0.5, 0.5, 0.0]] * 3)


def test_bootstrap_ci_reproducible_stratified_and_contains_point():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.35 * y + rng.random(60) * 0.65, 0, 1)
    first = bootstrap_ci(roc_auc, y, p, n_resamples=300, seed=3)
    assert first == bootstrap_ci(roc_auc, y, p, n_resamples=300, seed=3)
    assert first != bootstrap_ci(roc_auc, y, p, n_resamples=300, seed=4)
    point, low, high = first
    assert point == roc_auc(y, p) and low <= point <= high < 1.0
    counts = []
    bootstrap_ci(lambda t, q: counts.append(np.bincount(t, minlength=2).tolist()) or 0.0, y, p, n_resamples=20)
    assert all(c == np.bincount(y).tolist() for c in counts)


def test_classification_report_keys_and_cis():
    report = classification_report(Y_MC, P_MC, ["a", "b", "c"], n_resamples=200, seed=1)
    metrics = report["metrics"]
    expected_keys = {"auc", "auc_a", "auc_b", "auc_c", "accuracy", "balanced_accuracy", "ece"}
    for metric in ("sensitivity", "specificity", "precision", "f1"):
        expected_keys |= {f"{metric}_{c}" for c in ("a", "b", "c", "macro")}
    assert set(metrics) == expected_keys
    assert metrics["auc"]["value"] == pytest.approx(roc_auc(Y_MC, P_MC))
    for entry in metrics.values():
        assert entry["ci_low"] - 1e-12 <= entry["value"] <= entry["ci_high"] + 1e-12 or math.isnan(entry["ci_low"])
    assert report["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 2]]
    # the report's interval is bootstrap_ci's with the same seed
    assert bootstrap_ci(roc_auc, Y_MC, P_MC, n_resamples=200, seed=1)[1:] == pytest.approx(
        (metrics["auc"]["ci_low"], metrics["auc"]["ci_high"])
    )
    assert classification_report(Y_MC, P_MC, ["a", "b", "c"], n_resamples=200, seed=1) == report


def test_cumulative_and_handler_on_engine():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 24)
    logits = rng.normal(size=(24, 3)) + 1.5 * np.eye(3)[y]
    prob = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
    batches = [
        {"pred": torch.as_tensor(prob[i : i + 8]), "label": torch.as_tensor(y[i : i + 8])} for i in range(0, 24, 8)
    ]
    metric = ClassificationMetrics(class_names=["a", "b", "c"])
    for b in batches:
        metric(b["pred"], torch.nn.functional.one_hot(b["label"], 3))  # one-hot labels are accepted too
    assert metric.aggregate()["auc"] == pytest.approx(roc_auc(y, prob))

    engine = Engine(lambda e, b: b)
    ClassificationMetricsHandler(
        class_names=["a", "b", "c"], output_transform=lambda o: (o["pred"], o["label"])
    ).attach(engine, "val_auc")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["val_auc"] == pytest.approx(roc_auc(y, prob))
    assert engine.state.metrics["f1_macro"] == pytest.approx(f1_score(y, prob))
    details = engine.state.metric_details["val_auc"]
    assert details["case_ids"][:2] == ["case_0000", "case_0001"] and len(details["case_ids"]) == 24
    np.testing.assert_allclose(details["y_prob"], prob)
