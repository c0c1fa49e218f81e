"""Chest X-ray evaluation outputs: the per-image figure, its evaluator handler, the localisation report section and the
TensorBoard CAM panel."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from matplotlib.patches import Rectangle

from pipelines.evaluation import (
    CAMLocalisationReportHandler,
    CXRFigureHandler,
    save_cxr_figure,
)
from pipelines.handlers.tensorboard import CAMTensorBoardHandler

NAMES = ("No Finding", "Effusion")


def _region_and_cam(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    region = np.zeros((size, size), dtype=np.float32)
    region[size // 2 :, :] = 1  # bottom half
    cam = np.zeros((size, size), dtype=np.float32)
    cam[3 * size // 4 :, :] = 0.9  # the lower half of the region above the threshold: ratio 0.5
    return region, cam


def test_figure_title_box_and_ratio(tmp_path):
    region, cam = _region_and_cam()
    fig = save_cxr_figure(str(tmp_path / "x.png"), np.random.default_rng(0).random((16, 16)), cam, NAMES,
                          [0.2, 0.8], lung_box=[2, 3, 14, 13], region=region, true_label=1, cam_threshold=0.5,
                          return_figure=True)
    assert fig._suptitle.get_text() == "predicted: Effusion (0.80)   true: Effusion   attention in region: 0.50"
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1  # columns 3..13, rows 2..14 in imshow coordinates (pixel centres at integers)
    assert boxes[0].get_xy() == (2.5, 1.5) and boxes[0].get_width() == 10 and boxes[0].get_height() == 12
    path = save_cxr_figure(str(tmp_path / "sub" / "y.png"), np.zeros((1, 16, 16)), torch.as_tensor(cam)[None],
                           NAMES, torch.tensor([0.6, 0.4]))
    assert os.path.getsize(path) > 0
    with pytest.raises(ValueError, match="probs has 3 entries"):
        save_cxr_figure(str(tmp_path / "z.png"), np.zeros((8, 8)), None, NAMES, [0.1, 0.2, 0.7])


def _engine(outputs: list[dict]) -> Engine:
    """An evaluator stand-in whose iterations return ``outputs`` (the eval step's dicts)."""
    return Engine(lambda e, batch: outputs[e.state.iteration - 1])


def test_figure_handler_writes_one_figure_per_image(tmp_path):
    region, cam = _region_and_cam()
    out = {
        "image": torch.rand(2, 1, 16, 16), "pred": torch.tensor([[0.3, 0.7], [0.9, 0.1]]),
        "label": torch.tensor([1, 0]), "cam": torch.as_tensor(cam).expand(2, 1, 16, 16),
        "region": torch.stack([torch.as_tensor(region), torch.zeros(16, 16)])[:, None],
    }
    batch = {"case_id": ["a/1", "b"], "lung_box": torch.tensor([[2.0, 3, 14, 13], [0, 0, 16, 16]])}
    engine = _engine([out])
    handler = CXRFigureHandler(str(tmp_path / "figures"), NAMES)
    handler.attach(engine)
    engine.run([batch], max_epochs=1)
    assert sorted(os.listdir(tmp_path / "figures")) == ["a_1.png", "b.png"]
    assert handler.written == [str(tmp_path / "figures" / "a_1.png"), str(tmp_path / "figures" / "b.png")]


def test_localisation_report_section(tmp_path):
    rows = [{"case_id": "x", "ratio": 0.5, "pointing": 1.0}, {"case_id": "y", "ratio": 0.25, "pointing": 0.0}]
    engine = Engine(lambda e, b: None)
    # the metric's per-image rows, as CAMLocalisationHandler leaves them
    engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "metric_details", {"val_attention_ratio": rows}))
    handler = CAMLocalisationReportHandler(str(tmp_path), metric_name="val_attention_ratio", cam_threshold=0.4)
    handler.attach(engine)
    engine.run([0], max_epochs=1)
    assert handler.section == {"n": 2, "cam_threshold": 0.4, "attention_ratio": 0.375, "pointing_hit_rate": 0.5}
    with open(tmp_path / "localisation.csv") as f:
        assert list(csv.DictReader(f)) == [
            {"case_id": "x", "attention_ratio": "0.5", "pointing_hit": "1.0"},
            {"case_id": "y", "attention_ratio": "0.25", "pointing_hit": "0.0"},
        ]
    text = handler.markdown()
    assert "| attention in region (cam > 0.4) | 0.375 | 2 |" in text and "| pointing game hit rate | 0.500 | 2 |" in text
    other = CAMLocalisationReportHandler(str(tmp_path), metric_name="missing")
    engine.state.metric_details = {}
    with pytest.raises(KeyError, match="no metric details named 'missing'"):
        other(engine)


def test_tensorboard_cam_panel():
    region, cam = _region_and_cam(8)
    output = {"image": torch.zeros(3, 1, 8, 8), "region": torch.as_tensor(region).expand(3, 1, 8, 8),
              "cam": torch.as_tensor(cam).expand(3, 1, 8, 8)}
    handler = CAMTensorBoardHandler.__new__(CAMTensorBoardHandler)  # the picture only: no writer needed
    handler.num_images = 2
    picture = handler.make_picture(output)
    assert picture.shape == (3, 16, 24) and picture.min() >= 0 and picture.max() <= 1
    region_tile = picture[:, :8, 8:16]
    # inside the region: the green of the palette blended at 0.4 over black; outside: black
    np.testing.assert_allclose(region_tile[:, 6, 0], 0.4 * np.array([0.2, 0.8, 0.2]), rtol=1e-5)
    np.testing.assert_allclose(region_tile[:, 2, 0], 0.0)


def test_report_and_figure_bases_need_their_hooks():
    """The shared bases of the localisation reports and the evaluation figures cannot be built without their hooks."""
    from pipelines.evaluation.handlers import RowsReportHandler
    from pipelines.evaluation.lanet import EvaluationFigureHandler

    with pytest.raises(TypeError, match="abstract"):
        RowsReportHandler("out", "metric", "rows.csv", "section")
    with pytest.raises(TypeError, match="abstract"):
        EvaluationFigureHandler("out", ["a", "b"])
