"""The scanner-frame crop option of the folder predictors (``crop_frame``): the GUI around an ultrasound screen
capture gets no lesion prediction, and masks keep the frame's size."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from pipelines.predictors import JointSegClsPredictor, LANetPredictor

H, W = 60, 80
AREA = (10, 12, 50, 64)  # rows 10..49, columns 12..63


def _screen_capture() -> np.ndarray:
    """Speckle image area ``AREA`` in a black frame with GUI text rows and a colour bar."""
    rng = np.random.default_rng(0)
    f = np.zeros((H, W), np.uint8)
    r0, c0, r1, c1 = AREA
    f[r0:r1, c0:c1] = rng.integers(30, 200, (r1 - r0, c1 - c0))
    f[1:3, 4:70] = 220  # text
    f[55:57, 0:W:3] = 180
    f[15:45, 70:74] = 200  # colour bar
    return f


class _Everywhere(nn.Module):
    """LA-Net's ``{"logits", "mask"}`` with a lesion everywhere on the network grid (mask probability 1)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = x.shape
        return {"logits": torch.tensor([[2.0, 0.0]]).expand(b, 2), "mask": torch.ones(b, 1, h // 8, w // 8)}


class _Joint(nn.Module):
    """The joint network's ``{"seg", "logits"}`` with a lesion everywhere (logit +8)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"seg": torch.full((x.shape[0], 1, *x.shape[2:]), 8.0),
                "logits": torch.tensor([[1.0, 3.0, 0.0]]).expand(x.shape[0], 3)}


@pytest.mark.parametrize("predictor", ["lanet", "joint"])
def test_crop_frame_gives_frame_sized_masks_with_nothing_on_the_gui(tmp_path, predictor):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_screen_capture()).save(src / "us.png")

    def make(crop: bool):
        if predictor == "lanet":
            return LANetPredictor(_Everywhere(), ["benign", "malignant"], image_size=32, crop_frame=crop)
        return JointSegClsPredictor(_Joint(), ["normal", "benign", "malignant"], image_size=32, save_figures=True,
                                    crop_frame=crop)

    make(True)(str(src), str(tmp_path / "crop"))
    with Image.open(tmp_path / "crop" / "us_mask.png") as im:
        mask = np.asarray(im)
    assert mask.shape == (H, W)
    r0, c0, r1, c1 = AREA
    inside = np.zeros((H, W), bool)
    inside[r0:r1, c0:c1] = True
    assert (mask[~inside] == 0).all()  # nothing on the GUI
    if predictor == "joint":  # resized whole: the lesion fills the image area
        assert (mask[inside] == 255).all()
    else:  # LA-Net's short side + centre crop of the 40 x 52 image area: its centre 40 x 40 (columns 6..45)
        assert (mask[r0:r1, c0 + 6:c0 + 46] == 255).all() and (mask[r0:r1, c0:c0 + 5] == 0).all()
    with open(tmp_path / "crop" / "predictions.csv") as f:
        row = next(csv.DictReader(f))
    assert [int(row[k]) for k in ("crop_x1", "crop_y1", "crop_x2", "crop_y2")] == [c0, r0, c1, r1]
    if predictor == "joint":
        assert float(row["lesion_fraction"]) == pytest.approx((r1 - r0) * (c1 - c0) / (H * W), abs=1e-6)
        assert (tmp_path / "crop" / "figures" / "us.png").is_file()
    # without the crop (the default) the GUI gets the lesion too
    make(False)(str(src), str(tmp_path / "whole"))
    with Image.open(tmp_path / "whole" / "us_mask.png") as im:
        whole = np.asarray(im)
    assert whole.shape == (H, W) and whole[1, 40] == 255  # a GUI text row
    with open(tmp_path / "whole" / "predictions.csv") as f:
        assert "crop_x1" not in next(csv.DictReader(f))
