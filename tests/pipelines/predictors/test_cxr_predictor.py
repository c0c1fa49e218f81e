"""CXRPredictor: probabilities of every radiograph of a folder (the bundle's pre-processing), Grad-CAM figures in the
original image frame, unreadable files skipped."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from networks.nets.cam_classifier import CAMClassifier
from pipelines.predictors import CXRPredictor
from transforms.recipes import cxr_classification_image_transforms

NAMES = ("No Finding", "Effusion")
SIZE = 32


@pytest.fixture
def trained(tmp_path):
    torch.manual_seed(0)
    network = CAMClassifier(num_classes=2, backbone="resnet10").eval()
    ckpt = tmp_path / "model.pt"
    torch.save(network.state_dict(), ckpt)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).save(inputs / "a.png")
    rgba = rng.integers(0, 256, (36, 36, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(inputs / "b.png")
    Image.fromarray(rng.integers(0, 65536, (34, 40), dtype=np.uint16)).save(inputs / "c.png")
    (inputs / "broken.png").write_bytes(b"not a png")
    return network, str(ckpt), str(inputs)


def test_probabilities_match_the_network_on_the_preprocessed_image(trained, tmp_path):
    network, ckpt, inputs = trained
    fresh = CAMClassifier(num_classes=2, backbone="resnet10")  # other initial weights: the checkpoint replaces them
    predictor = CXRPredictor(fresh, NAMES, image_size=SIZE, ckpt_path=ckpt)
    summary = predictor(inputs, str(tmp_path / "out"))
    assert summary.num_images == 4 and [f for f, _ in summary.failed] == ["broken.png"]
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["broken.png"]["status"] == "error" and rows["a.png"]["status"] == "ok"
    # a.png by hand: resize to 32 x 32 (bilinear, anti-aliased), [0, 255] -> [0, 1] -> (x - 0.5) / 0.5
    image = np.asarray(Image.open(os.path.join(inputs, "a.png")), dtype=np.float32)[None]
    x = cxr_classification_image_transforms(SIZE)({"image": torch.as_tensor(image)})["image"]
    assert x.shape == (1, SIZE, SIZE) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    with torch.no_grad():
        expected = torch.softmax(network(torch.as_tensor(x)[None]), dim=1)[0]
    got = torch.tensor([float(rows["a.png"]["prob_No Finding"]), float(rows["a.png"]["prob_Effusion"])])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert rows["a.png"]["prediction"] == NAMES[int(expected.argmax())]
    # figures of the readable images only, at the images' own size
    assert sorted(os.listdir(tmp_path / "out" / "figures")) == ["a.png", "b.png", "c.png"]


def test_cam_is_the_grad_cam_of_the_predicted_class_in_the_original_frame(trained):
    network, ckpt, inputs = trained
    predictor = CXRPredictor(network, NAMES, image_size=SIZE, save_figures=False)
    predictor.prepare()
    raw = predictor.load(os.path.join(inputs, "a.png"))
    data = dict(predictor.preprocessing(raw))
    cam = predictor.cam(data)
    assert cam.shape == (1, 40, 48) and float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
    # by hand: alpha = spatial mean of d logit / d A, ReLU(sum alpha A) / max, bilinear to 32, then to 40 x 48
    x = torch.as_tensor(data["image"]).float()[None]
    features = network.features(x).detach().requires_grad_(True)
    logits = network.classify(features)
    (grad,) = torch.autograd.grad(logits[0, logits.argmax()], features)
    by_hand = F.relu((grad.mean(dim=(2, 3), keepdim=True) * features).sum(1, keepdim=True)).detach()
    by_hand = by_hand / (by_hand.max() + 1e-7)
    by_hand = F.interpolate(by_hand, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    by_hand = F.interpolate(by_hand, size=(40, 48), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(cam, by_hand, atol=1e-4, rtol=1e-4)


def test_output_folder_inside_the_input_is_refused(trained):
    network, _, inputs = trained
    with pytest.raises(ValueError):
        CXRPredictor(network, NAMES, image_size=SIZE)(inputs, os.path.join(inputs, "out"))
