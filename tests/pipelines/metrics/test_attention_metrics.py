"""pipelines.metrics.attention: attention-in-region ratio and pointing game (functions, Cumulative, handler)."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine

from pipelines.metrics import (
    CAMLocalisationHandler,
    CAMLocalisationMetrics,
    attention_in_region_ratio,
    pointing_game_hits,
)

# two images: a CAM with its peak inside the region, one with its peak outside
CAM = torch.tensor([
    [[0.1, 0.6, 0.2], [0.7, 1.0, 0.4], [0.0, 0.3, 0.9]],
    [[1.0, 0.2, 0.0], [0.0, 0.6, 0.0], [0.0, 0.55, 0.5]],
])
REGION = torch.tensor([
    [[0, 0, 0], [1, 1, 1], [1, 1, 1]],
    [[0, 0, 0], [0, 1, 1], [0, 1, 1]],
], dtype=torch.float32)[:, None]


def test_ratio_by_hand():
    # image 1: region values 0.7 1.0 0.4 0.0 0.3 0.9 -> 3 of 6 above 0.5; image 2: 0.6 0.0 0.55 0.5 -> 2 of 4
    expected = torch.tensor([0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(attention_in_region_ratio(CAM, REGION, 0.5), expected)
    # threshold 0.35: image 1 -> 0.7 1.0 0.4 0.9 (4 of 6); image 2 -> 0.6 0.55 0.5 (3 of 4); (B, 1, H, W) CAMs too
    torch.testing.assert_close(attention_in_region_ratio(CAM[:, None], REGION, 0.35),
                               torch.tensor([4 / 6, 3 / 4], dtype=torch.float64))


def test_pointing_game_by_hand():
    torch.testing.assert_close(pointing_game_hits(CAM, REGION), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert pointing_game_hits(torch.zeros(1, 3, 3), REGION[:1]).item() == 0.0  # nothing highlighted: a miss


def test_empty_region_is_nan_and_cam_is_resized():
    empty = torch.zeros(1, 1, 3, 3)
    assert math.isnan(attention_in_region_ratio(CAM[:1], empty).item())
    assert math.isnan(pointing_game_hits(CAM[:1], empty).item())
    cam = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # bilinear to 4 x 4: columns 0, 0.25, 0.75, 1
    region = torch.zeros(1, 1, 4, 4)
    region[..., :, 1:3] = 1
    assert attention_in_region_ratio(cam, region, 0.5).item() == 0.5
    with pytest.raises(ValueError, match="region must be"):
        attention_in_region_ratio(cam, region[:, 0])


def test_cumulative_counts_only_images_with_a_region():
    metric = CAMLocalisationMetrics(threshold=0.5)
    metric(CAM, REGION)
    metric(CAM[:1], torch.zeros(1, 1, 3, 3))  # No Finding: no row counted
    assert metric.aggregate() == {"ratio": 0.5, "pointing": 0.5, "n": 2}
    rows = metric.per_case(["a", "b", "normal"])
    assert [r["case_id"] for r in rows] == ["a", "b"] and rows[1]["pointing"] == 0.0
    metric.reset()
    assert math.isnan(metric.aggregate()["ratio"]) and metric.aggregate()["n"] == 0


@pytest.mark.parametrize("kind, expected", [("ratio", (0.5 + 0.5 + 0.0) / 3), ("pointing", 1 / 3)])
def test_handler_on_engine(kind, expected):
    batches = [
        {"cam": CAM[:, None], "region": REGION, "ids": ["a", "b"]},
        {"cam": torch.zeros(2, 1, 3, 3), "region": torch.cat([REGION[:1], torch.zeros(1, 1, 3, 3)]),
         "ids": ["c", "normal"]},
        {"cam": None, "region": None, "ids": []},  # a batch without CAMs adds nothing
    ]
    engine = Engine(lambda _engine, batch: batch)
    CAMLocalisationHandler(kind, case_id_transform=lambda batch: batch["ids"]).attach(engine, "m")
    state = engine.run(batches, max_epochs=1)
    assert state.metrics["m"] == pytest.approx(expected)
    assert [r["case_id"] for r in state.metric_details["m"]] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="kind"):
        CAMLocalisationHandler("dice")
