"""SegmentationFolderPredictor: masks in the original image grid from a network whose output is known, the CSV, and
the lung recipe's image-only pre-processing (the predictor's) equal to its evaluation pre-processing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from pipelines.data import make_montgomery_demo, montgomery_datalist
from pipelines.predictors import (
    SegmentationFolderPredictor,
    foreground_probability,
    load_input_image,
)
from transforms import recipes

S = 32


class BoxNet(torch.nn.Module):
    """Logits +10 inside ``box`` of the input grid, -10 elsewhere, whatever the input (one channel, or background +
    foreground with ``two_channels``)."""

    def __init__(self, box, two_channels: bool = False) -> None:
        super().__init__()
        self.box, self.two_channels = box, two_channels
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r0, c0, r1, c1 = self.box
        logits = torch.full((x.shape[0], 1, *x.shape[2:]), -10.0)
        logits[:, :, r0:r1, c0:c1] = 10.0
        logits = logits * self.scale
        return torch.cat([-logits, logits], dim=1) if self.two_channels else logits


def test_foreground_probability_sigmoid_and_softmax():
    logits = torch.tensor([[[[0.0, 2.0]]]])
    torch.testing.assert_close(foreground_probability(logits), torch.sigmoid(logits))
    two = torch.cat([torch.zeros_like(logits), logits], dim=1)  # background 0, foreground logit
    torch.testing.assert_close(foreground_probability(two), torch.sigmoid(logits))
    torch.testing.assert_close(foreground_probability({"pred": logits}), torch.sigmoid(logits))
    with pytest.raises(ValueError, match="expected segmentation logits"):
        foreground_probability(torch.zeros(2, 3))


@pytest.mark.parametrize("two_channels", [False, True])
def test_masks_are_written_in_the_original_grid(tmp_path, two_channels):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 64), dtype=np.uint8), mode="L").save(inputs / "wide.png")
    Image.fromarray(rng.integers(0, 256, (96, 32, 3), dtype=np.uint8), mode="RGB").save(inputs / "tall.png")
    (inputs / "broken.png").write_bytes(b"not an image")
    predictor = SegmentationFolderPredictor(BoxNet((8, 4, 24, 20), two_channels),
                                            recipes.cxr_lung_image_transforms(S), threshold=0.5)
    summary = predictor(str(inputs), str(tmp_path / "out"))
    assert summary.num_images == 3 and [f for f, _ in summary.failed] == ["broken.png"]

    # the box of the 32 x 32 grid scaled to each image (rows x 1 or x 3, columns x 2 or x 1): bilinear upsampling of
    # the probability puts the 0.5 level exactly on the scaled box edges (upsampling both axes would round the corners)
    for name, shape, (r0, c0, r1, c1) in (("wide", (32, 64), (8, 8, 24, 40)), ("tall", (96, 32), (24, 4, 72, 20))):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{name}_mask.png"))
        expected = np.zeros(shape, np.uint8)
        expected[r0:r1, c0:c1] = 255
        np.testing.assert_array_equal(mask, expected)

    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert list(rows["wide.png"]) == ["file", "mask", "foreground_fraction", "status", "error"]
    assert rows["wide.png"]["mask"] == "wide_mask.png" and rows["wide.png"]["status"] == "ok"
    assert float(rows["wide.png"]["foreground_fraction"]) == pytest.approx(16 * 32 / (32 * 64))
    assert rows["broken.png"]["status"] == "error" and rows["broken.png"]["mask"] == ""


def test_output_folder_inside_the_input_is_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(tmp_path / "a.png")
    predictor = SegmentationFolderPredictor(BoxNet((0, 0, 4, 4)), recipes.cxr_lung_image_transforms(S))
    with pytest.raises(ValueError, match="inside the input folder"):
        predictor(str(tmp_path), str(tmp_path / "out"))


def test_image_transforms_equal_the_evaluation_transforms(tmp_path):
    root = make_montgomery_demo(str(tmp_path), num_cases=4, size=48)
    evaluation, image_only = recipes.cxr_lung_eval_transforms(S), recipes.cxr_lung_image_transforms(S)
    for item in montgomery_datalist(root):
        expected = evaluation(item)
        pixels = load_input_image(item["image"])
        got = image_only({"image": MetaTensor(torch.from_numpy(pixels), meta={"filename_or_obj": item["image"]})})
        torch.testing.assert_close(torch.as_tensor(got["image"]), torch.as_tensor(expected["image"]))
        assert expected["image"].shape == expected["label"].shape == (1, S, S)
        assert set(torch.unique(expected["label"]).tolist()) == {0.0, 1.0}
        # z-scored image
        assert abs(float(expected["image"].mean())) < 1e-4 and float(expected["image"].std()) == pytest.approx(1, 1e-2)


def test_training_transforms_augment_image_and_mask_alike(tmp_path):
    size = 40
    image = np.zeros((80, 60), np.uint8)
    image[20:60, 15:45] = 200
    Image.fromarray(image, mode="L").save(tmp_path / "i.png")
    Image.fromarray((image > 0).astype(np.uint8) * 255, mode="L").save(tmp_path / "m.png")
    train = recipes.cxr_lung_train_transforms(size, affine_prob=1.0, gamma_prob=0.0)
    train.set_random_state(3)
    out = train({"image": str(tmp_path / "i.png"), "label": [str(tmp_path / "m.png")], "case_id": "x"})
    img, lab = np.asarray(out["image"][0]), np.asarray(out["label"][0])
    assert lab.shape == (size, size) and set(np.unique(lab).tolist()) == {0.0, 1.0}
    # the bright square and the mask moved together: the mask covers the bright pixels and little else
    bright = img > img.mean() + 0.5 * img.std()
    assert (bright & (lab > 0)).sum() / bright.sum() > 0.9
    assert (bright & (lab > 0)).sum() / (lab > 0).sum() > 0.8
