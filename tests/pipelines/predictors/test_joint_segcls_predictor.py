"""The joint segmentation + classification folder predictor: probabilities, masks in the image's own grid,
visualisations, unreadable files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from pipelines.predictors import JointSegClsPredictor, save_joint_segcls_figure

CLASSES = ("normal", "benign", "malignant")


class _LeftHalf(nn.Module):
    """Lesion logits +8 on the left half of the input, -8 on the right; fixed class logits (1, 3, 0)."""

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        seg = torch.full((x.shape[0], 1, *x.shape[2:]), -8.0)
        seg[..., : x.shape[-1] // 2] = 8.0
        return {"seg": seg, "logits": torch.tensor([[1.0, 3.0, 0.0]]).expand(x.shape[0], 3)}


def test_predictor_writes_probabilities_masks_at_image_size_and_figures(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60), dtype=np.uint8)).save(inputs / "a.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(inputs / "b.jpg")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(inputs / "a_mask.png")  # a BUSI mask file: skipped
    (inputs / "c.png").write_bytes(b"broken")
    summary = JointSegClsPredictor(_LeftHalf(), CLASSES, image_size=32)(str(inputs), str(tmp_path / "out"))
    assert summary.num_images == 3 and summary.num_failed == 1
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["a.png", "b.jpg", "c.png"] and rows["c.png"]["status"] == "error"
    expected = torch.softmax(torch.tensor([1.0, 3.0, 0.0]), 0).tolist()
    for file, (h, w) in (("a.png", (40, 60)), ("b.jpg", (32, 32))):
        row = rows[file]
        assert [float(row[f"prob_{c}"]) for c in CLASSES] == pytest.approx(expected, abs=1e-6)
        assert row["prediction"] == "benign" and row["mask"] == f"{file.rsplit('.', 1)[0]}_mask.png"
        mask = np.asarray(Image.open(tmp_path / "out" / row["mask"]))
        assert mask.shape == (h, w) and set(np.unique(mask)) == {0, 255}
        # the left half of the network grid maps back to the left half of the image
        assert (mask[:, : w // 2 - 1] == 255).all() and (mask[:, w // 2 + 1 :] == 0).all()
        assert float(row["lesion_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-6)
        assert (tmp_path / "out" / "figures" / f"{file.rsplit('.', 1)[0]}.png").is_file()
    assert not (tmp_path / "out" / "a_mask_mask.png").exists()


def test_figure_checks_its_inputs(tmp_path):
    image = np.zeros((16, 16))
    path = save_joint_segcls_figure(str(tmp_path / "f" / "x.png"), image, image > 1, CLASSES, [0.2, 0.5, 0.3])
    assert Image.open(path).size == (1100, 380)
    with pytest.raises(ValueError, match="class_names"):
        save_joint_segcls_figure(str(tmp_path / "y.png"), image, None, CLASSES, [0.5, 0.5])
    with pytest.raises(ValueError, match="differ in size"):
        save_joint_segcls_figure(str(tmp_path / "z.png"), image, np.zeros((8, 8)), CLASSES, [0.2, 0.5, 0.3])
