"""Lung boxes of a prepared task folder: exact boxes from a network whose mask is known, the CSV that
``read_lung_boxes`` reads, boxes from given masks, no silent overwrite, and ``python -m pipelines lung-boxes``."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from networks import build_segmentation_network
from pipelines.data import DatasetError, read_lung_boxes
from pipelines.predictors.lung_boxes import (
    LungBoxFileExistsError,
    compute_lung_boxes,
    load_lung_model,
    lung_boxes_from_masks,
    predict_lung_box,
    task_images,
)
from transforms import recipes

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "bundles" / "cxr_lung_segmentation" / "configs" / "inference.yaml"
COLUMNS = ["image", "row_min", "col_min", "row_max", "col_max", "height", "width", "lung_found"]
S = 64


class BoxNet(torch.nn.Module):
    """Logits +10 inside ``box`` of the network grid, -10 elsewhere (``box=None``: nowhere), whatever the input."""

    def __init__(self, box) -> None:
        super().__init__()
        self.box = box
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((x.shape[0], 1, *x.shape[2:]), -10.0)
        if self.box is not None:
            r0, c0, r1, c1 = self.box
            logits[:, :, r0:r1, c0:c1] = 10.0
        return logits * self.scale


def _task(root: Path, shapes: dict[str, tuple[int, int]]) -> Path:
    rng = np.random.default_rng(0)
    for rel, shape in shapes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode="L").save(path)
    return root


SHAPES = {
    "train/No_Finding/a.png": (256, 128),
    "val/Effusion/b.png": (100, 75),
    "test/Effusion/c.png": (512, 512),
}


def test_box_of_a_known_mask_in_the_original_grid():
    # the network's box [8, 16, 40, 48] of its 64 grid is [64, 128, 320, 384] of the 512 grid (the 0.5 level of the
    # bilinearly upsampled probability lies on the edges; only the corner pixels drop out, not the box), then
    # rows x H / 512 and columns x W / 512
    network, preprocessing = BoxNet((8, 16, 40, 48)).eval(), recipes.cxr_lung_image_transforms(S)
    image = np.zeros((1, 256, 128), np.float32)
    box, found = predict_lung_box(network, preprocessing, image, size=512)
    assert found
    np.testing.assert_allclose(box, [32, 32, 160, 96])
    box, found = predict_lung_box(network, preprocessing, np.zeros((1, 100, 75), np.float32), size=512)
    np.testing.assert_allclose(box, [12.5, 18.75, 62.5, 56.25])
    box, found = predict_lung_box(BoxNet(None).eval(), preprocessing, image, size=512)
    assert not found
    np.testing.assert_allclose(box, [0, 0, 256, 128])


def test_compute_writes_the_csv_read_lung_boxes_reads(tmp_path, monkeypatch):
    task = _task(tmp_path / "ne", SHAPES)
    network, preprocessing = BoxNet((8, 16, 40, 48)).eval(), recipes.cxr_lung_image_transforms(S)
    monkeypatch.setattr("pipelines.predictors.lung_boxes.load_lung_model",
                        lambda *args, **kwargs: (network, preprocessing, 0.5))
    path = compute_lung_boxes(str(task), "unused", progress=False)
    assert path == str(task / "lung_boxes.csv")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        rows = list(reader)
    # sorted by relative path; fractional boxes widened to whole pixels (floor the minima, ceil the maxima)
    assert rows == [
        COLUMNS,
        ["test/Effusion/c.png", "64", "128", "320", "384", "512", "512", "1"],
        ["train/No_Finding/a.png", "32", "32", "160", "96", "256", "128", "1"],
        ["val/Effusion/b.png", "12", "18", "63", "57", "100", "75", "1"],
    ]
    boxes = read_lung_boxes(path)
    assert boxes["val/Effusion/b.png"]["lung_box"] == [12, 18, 63, 57]

    # an existing file is not replaced unless asked for
    with pytest.raises(LungBoxFileExistsError, match="exists already; pass --overwrite true"):
        compute_lung_boxes(str(task), "unused", progress=False)
    network.box = None
    compute_lung_boxes(str(task), "unused", progress=False, overwrite=True)
    boxes = read_lung_boxes(path)
    entry = boxes["train/No_Finding/a.png"]
    assert (entry["lung_box"], entry["height"], entry["width"], entry["lung_found"]) == ([0, 0, 256, 128], 256, 128, 0)


def test_task_images_and_an_empty_task(tmp_path):
    task = _task(tmp_path / "t", dict(SHAPES, **{"other/x/d.png": (8, 8), "train/e.png": (8, 8)}))
    (task / "train" / "No_Finding" / "notes.txt").write_text("not an image")
    assert task_images(str(task)) == sorted(SHAPES)
    with pytest.raises(DatasetError, match="no images in"):
        task_images(str(tmp_path / "t" / "train"))
    with pytest.raises(DatasetError, match="does not exist"):
        task_images(str(tmp_path / "none"))


def test_boxes_from_given_masks(tmp_path):
    task = _task(tmp_path / "np", SHAPES)
    masks = {rel: np.zeros(shape) for rel, shape in SHAPES.items()}
    masks["train/No_Finding/a.png"][10:20, 5:7] = 1
    masks["train/No_Finding/a.png"][40, 100] = 1  # two lungs: the box encloses both
    masks["val/Effusion/b.png"][0:100, 74] = 0.7
    path = lung_boxes_from_masks(str(task), masks)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1:] == [
        ["test/Effusion/c.png", "0", "0", "512", "512", "512", "512", "0"],
        ["train/No_Finding/a.png", "10", "5", "41", "101", "256", "128", "1"],
        ["val/Effusion/b.png", "0", "74", "100", "75", "100", "75", "1"],
    ]
    assert lung_boxes_from_masks(str(task), lambda rel: masks[rel], output=str(tmp_path / "b.csv")) == str(
        tmp_path / "b.csv")
    masks["val/Effusion/b.png"] = np.zeros((75, 100))
    with pytest.raises(DatasetError, match=r"b\.png is 75 x 100 but the image is 100 x 75"):
        lung_boxes_from_masks(str(task), masks, overwrite=True)
    del masks["val/Effusion/b.png"]
    with pytest.raises(DatasetError, match=r"no lung mask given for .*b\.png"):
        lung_boxes_from_masks(str(task), masks, overwrite=True)


@pytest.fixture
def run_folder(tmp_path):
    """A small run folder: the bundle's inference config at 32 x 32 with narrow features and random weights."""
    config = yaml.safe_load(CONFIG.read_text())
    config["image_size"] = 32
    config["network_def"]["features"] = [4, 8, 16, 32]
    run = tmp_path / "run"
    (run / "configs").mkdir(parents=True)
    (run / "models").mkdir()
    (run / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    network = build_segmentation_network(backbone="unet", attention="none", spatial_dims=2, in_channels=1,
                                         out_channels=1, upsample="bilinear", features=[4, 8, 16, 32])
    torch.save(network.state_dict(), run / "models" / "model.pt")
    return run


def test_cli_writes_what_the_library_computes(tmp_path, run_folder):
    task = _task(tmp_path / "nep", {k: v for k, v in SHAPES.items() if "c.png" not in k})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pipelines", "lung-boxes", "--task_dir", str(task), "--lung_bundle",
               str(run_folder), "--device", "cpu"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"[lung-boxes] {task / 'lung_boxes.csv'}" in done.stdout

    network, preprocessing, threshold = load_lung_model(str(run_folder), device="cpu")
    boxes = read_lung_boxes(str(task / "lung_boxes.csv"))
    assert sorted(boxes) == ["train/No_Finding/a.png", "val/Effusion/b.png"]
    for rel, entry in boxes.items():
        pixels = np.asarray(Image.open(task / rel), dtype=np.float32)[None]
        box, found = predict_lung_box(network, preprocessing, pixels, size=512, threshold=threshold)
        expected = [int(np.floor(box[0] + 1e-6)), int(np.floor(box[1] + 1e-6)), int(np.ceil(box[2] - 1e-6)),
                    int(np.ceil(box[3] - 1e-6))]
        assert entry["lung_box"] == expected and entry["lung_found"] == int(found)
        assert (entry["height"], entry["width"]) == pixels.shape[1:]

    # a second run refuses to overwrite, in one line
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "LungBoxFileExistsError: lung box file" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
