"""Youden's J threshold of binary problems (pipelines.metrics.classification.youden_point and the report keys)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.metrics.classification import (
    classification_report,
    sensitivity,
    specificity,
    youden_point,
)

# (labels, p(class 1), threshold, sensitivity, specificity), computed by hand along the ROC curve
CASES = [
    # descending: .9(+) .8(+) .6(-) .4(-) .35(+) .1(-): J = 1/3, 2/3, 1/3, 0, 1/3, 0 -> t = .8
    ([0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.6, 0.35, 0.8, 0.9], 0.8, 2 / 3, 1.0),
    # J = .5 at .9 and at .5: the tie goes to the higher threshold
    ([0, 1, 0, 1], [0.2, 0.5, 0.6, 0.9], 0.9, 0.5, 1.0),
    # tied scores form one step: at .7 two positives and one negative are called positive
    ([0, 1, 1, 0], [0.3, 0.7, 0.7, 0.7], 0.7, 1.0, 0.5),
    # an inverted classifier: J = -1 at .9 (only the negative called positive), 0 at .1 (everything positive)
    ([1, 0], [0.1, 0.9], 0.1, 1.0, 0.0),
]


@pytest.mark.parametrize("y, p, threshold, sens, spec", CASES)
def test_youden_point_by_hand(y, p, threshold, sens, spec):
    point = youden_point(y, p)
    assert point["threshold"] == pytest.approx(threshold)
    assert point["sensitivity"] == pytest.approx(sens) and point["specificity"] == pytest.approx(spec)
    assert point["j"] == pytest.approx(sens + spec - 1)
    # the same rates as the thresholded metrics at that threshold (class 1 positive)
    assert sensitivity(y, p, average=None, threshold=point["threshold"])[1] == pytest.approx(sens)
    assert specificity(y, p, average=None, threshold=point["threshold"])[1] == pytest.approx(spec)
    # (N, 2) probabilities give the same point
    assert youden_point(y, np.stack([1 - np.asarray(p), p], axis=1)) == point


def test_youden_is_the_maximum_over_all_thresholds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p = np.round(np.clip(0.3 * y + rng.random(80) * 0.7, 0, 1), 2)  # rounded: many ties
    point = youden_point(y, p)
    best = max(
        sensitivity(y, p, average=None, threshold=t)[1] + specificity(y, p, average=None, threshold=t)[1] - 1
        for t in np.unique(p)
    )
    assert point["j"] == pytest.approx(best)


def test_undefined_and_multiclass():
    assert all(math.isnan(v) for v in youden_point([1, 1, 1], [0.2, 0.5, 0.9]).values())
    with pytest.raises(ValueError, match="binary"):
        youden_point([0, 1, 2], np.eye(3))


def test_report_keys_and_cis():
    y, p = CASES[0][0], CASES[0][1]
    metrics = classification_report(y, p, ["No Finding", "Effusion"], n_resamples=200, seed=0)["metrics"]
    assert metrics["youden_threshold"]["value"] == pytest.approx(0.8)
    assert metrics["sensitivity_youden"]["value"] == pytest.approx(2 / 3)
    assert metrics["specificity_youden"]["value"] == pytest.approx(1.0)
    for key in ("youden_threshold", "sensitivity_youden", "specificity_youden"):
        entry = metrics[key]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]
    # the 0.5-threshold metrics are unchanged by the new keys
    assert metrics["sensitivity_Effusion"]["value"] == pytest.approx(2 / 3)
    assert metrics["specificity_Effusion"]["value"] == pytest.approx(2 / 3)
    three = classification_report([0, 1, 2], np.eye(3), n_resamples=0)["metrics"]
    assert not any("youden" in key for key in three)
