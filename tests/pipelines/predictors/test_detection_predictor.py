"""pipelines.predictors.DetectionPredictor: boxes of a detector whose output is known, mapped back to the original
frame (with and without the scanner-frame crop, round trip through the evaluation pre-processing), the CSV / COCO JSON
files, PNG / JPEG / DICOM input, unreadable files, frames without a box, overlays; the real RetinaNet end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
from PIL import Image

from pipelines.predictors import DetectionPredictor, draw_detections
from transforms.recipes import detection_eval_transforms
from transforms.ultrasound import scanner_frame_bounds

GRID = 64  # network input size S of these tests
# the stub detector's boxes on the 64 x 64 grid ([row_min, col_min, row_max, col_max]) and scores: unsorted, one
# below the default score threshold 0.05 (not written), one below the display threshold 0.3 (written, not drawn)
STUB_BOXES = [[4.0, 4.0, 12.0, 12.0], [16.0, 8.0, 48.0, 40.0], [0.0, 0.0, 8.0, 8.0]]
STUB_SCORES = [0.2, 0.9, 0.01]
BIG, SMALL = 1, 0  # indices into STUB_BOXES of the two boxes written, by decreasing score

PLAIN = (100, 200)  # a frame without GUI: rows x columns
FRAMED = (120, 240)  # a frame whose image area is rows 10..110, columns 20..220 (100 x 200), GUI text above
IMAGE_AREA = (10, 20, 110, 220)


class StubDetector(nn.Module):
    """Returns :data:`STUB_BOXES` with labels 0 and :data:`STUB_SCORES` for every image (or nothing, ``empty``) and
    records the shapes it was called with."""

    def __init__(self, empty: bool = False) -> None:
        super().__init__()
        self.network = nn.Conv2d(1, 1, 1)  # where the predictor loads a checkpoint into
        self.empty, self.calls = empty, []

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        assert not self.training
        self.calls.append(tuple(images.shape))
        n = 0 if self.empty else len(STUB_BOXES)
        return [{"box": torch.tensor(STUB_BOXES[:n]).reshape(n, 4), "label": torch.zeros(n, dtype=torch.long),
                 "label_scores": torch.tensor(STUB_SCORES[:n])} for _ in range(images.shape[0])]


def _plain_frame() -> np.ndarray:
    return np.full(PLAIN, 128, np.uint8)


def _framed_frame() -> np.ndarray:
    """Black screen, the image area (100 with a darker lesion, never 0), a short bright GUI text row at the top."""
    frame = np.zeros(FRAMED, np.uint8)
    r0, c0, r1, c1 = IMAGE_AREA
    frame[r0:r1, c0:c1] = 100
    frame[50:70, 90:130] = 20
    frame[2:7, 30:45] = 255  # 15 pixels: below 10 % of the row
    return frame


def _expected_xyxy(box: list[float], crop: tuple[int, int, int, int]) -> list[float]:
    """A 64-grid box ``[r0, c0, r1, c1]`` of a crop ``(r0, c0, r1, c1)`` of the frame -> ``[x1, y1, x2, y2]`` of the
    frame, by hand: scale by crop size / 64, shift by the crop's corner."""
    sr, sc = (crop[2] - crop[0]) / GRID, (crop[3] - crop[1]) / GRID
    return [crop[1] + box[1] * sc, crop[0] + box[0] * sr, crop[1] + box[3] * sc, crop[0] + box[2] * sr]


def _predictor(detector: nn.Module | None = None, crop_frame: bool = False, **kwargs) -> DetectionPredictor:
    return DetectionPredictor(detector if detector is not None else StubDetector(), image_size=GRID,
                              crop_frame=crop_frame, clahe=False, channels=1, **kwargs)


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _boxes_by_file(pred_dir) -> dict[str, list[tuple[list[float], float, str]]]:
    found: dict[str, list] = {}
    for r in _read_csv(pred_dir / "detections.csv"):
        found.setdefault(r["file"], []).append(([float(r[k]) for k in ("x1", "y1", "x2", "y2")], float(r["score"]),
                                                r["label"]))
    return found


def _write_dicom(path, array: np.ndarray) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


@pytest.fixture
def frames(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_plain_frame()).save(src / "plain.png")
    Image.fromarray(_framed_frame()).save(src / "framed.png")
    return src


def test_the_framed_frame_crops_to_its_image_area():
    assert scanner_frame_bounds(_framed_frame()) == IMAGE_AREA


# the crops of the two frames: with the scanner-frame crop the framed frame is cut to its image area
CROP_CASES = [
    (False, {"plain.png": (0, 0, *PLAIN), "framed.png": (0, 0, *FRAMED)}),
    (True, {"plain.png": (0, 0, *PLAIN), "framed.png": IMAGE_AREA}),
]


@pytest.mark.parametrize("crop_frame,crops", CROP_CASES, ids=["no_crop", "crop"])
def test_boxes_are_the_known_boxes_in_the_original_frame(frames, tmp_path, crop_frame, crops):
    detector = StubDetector()
    out = tmp_path / "out"
    summary = _predictor(detector, crop_frame)(str(frames), str(out))
    assert summary.num_images == 2 and summary.num_failed == 0
    assert detector.calls == [(1, 1, GRID, GRID)] * 2
    found = _boxes_by_file(out)
    assert set(found) == set(crops)
    for file, crop in crops.items():
        # decreasing score, the 0.01 box not written; coordinates exactly the hand-mapped ones
        assert [(b, s, lab) for b, s, lab in found[file]] == [
            (_expected_xyxy(STUB_BOXES[BIG], crop), 0.9, "lesion"),
            (_expected_xyxy(STUB_BOXES[SMALL], crop), 0.2, "lesion"),
        ]
    # hand-computed values of the big box: plain 100 x 200 -> rows x 100/64, columns x 200/64
    assert found["plain.png"][0][0] == [25.0, 25.0, 125.0, 75.0]
    assert found["framed.png"][0][0] == ([45.0, 35.0, 145.0, 85.0] if crop_frame else [30.0, 30.0, 150.0, 90.0])

    rows = {r["file"]: r for r in _read_csv(out / "predictions.csv")}
    crop_columns = ["crop_x1", "crop_y1", "crop_x2", "crop_y2"] if crop_frame else []
    assert list(next(iter(rows.values()))) == ["file", "n_boxes", "max_score", "height", "width", *crop_columns,
                                               "status", "error"]
    for file, (r0, c0, r1, c1) in crops.items():
        assert [int(rows[file][k]) for k in crop_columns] == ([c0, r0, c1, r1] if crop_frame else [])
    assert rows["plain.png"]["n_boxes"] == "2" and float(rows["plain.png"]["max_score"]) == 0.9
    assert (rows["framed.png"]["height"], rows["framed.png"]["width"]) == ("120", "240")
    assert {r["status"] for r in rows.values()} == {"ok"}


@pytest.mark.parametrize("crop_frame,crops", CROP_CASES, ids=["no_crop", "crop"])
def test_written_boxes_round_trip_through_the_evaluation_preprocessing(frames, tmp_path, crop_frame, crops):
    """The boxes written for a frame, read back as its truth and pre-processed like a training item, land on the
    detector's boxes on the network grid again."""
    out = tmp_path / "out"
    _predictor(crop_frame=crop_frame)(str(frames), str(out))
    pre = detection_eval_transforms(GRID, crop_frame=crop_frame, clahe=False, channels=1)
    for file, found in _boxes_by_file(out).items():
        boxes = [[y1, x1, y2, x2] for (x1, y1, x2, y2), _, _ in found]
        item = pre({"image": str(frames / file), "box": boxes, "label": [0] * len(boxes)})
        assert tuple(item["crop_box"].tolist()) == crops[file]
        np.testing.assert_allclose(item["box"].numpy(), [STUB_BOXES[BIG], STUB_BOXES[SMALL]], atol=1e-4)


def test_coco_json_matches_the_csv_and_loads_in_pycocotools(frames, tmp_path):
    out = tmp_path / "out"
    _predictor(crop_frame=True)(str(frames), str(out))
    coco = json.loads((out / "detections.json").read_text())
    assert coco["images"] == [{"id": 1, "file_name": "framed.png", "width": 240, "height": 120},
                              {"id": 2, "file_name": "plain.png", "width": 200, "height": 100}]
    assert coco["categories"] == [{"id": 1, "name": "lesion"}]
    ids = {im["id"]: im["file_name"] for im in coco["images"]}
    rows = _read_csv(out / "detections.csv")
    assert len(coco["annotations"]) == len(rows) == 4
    for ann, row in zip(coco["annotations"], rows):
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        assert ids[ann["image_id"]] == ann["file_name"] == row["file"]
        assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1] and ann["area"] == (x2 - x1) * (y2 - y1)
        assert ann["category_id"] == 1 and ann["score"] == float(row["score"])
    assert coco["annotations"][0]["bbox"] == [45.0, 35.0, 100.0, 50.0]  # the framed frame's big box, cropped

    pycocotools = pytest.importorskip("pycocotools.coco")
    gt = pycocotools.COCO(str(out / "detections.json"))  # the whole file is a COCO dataset
    results = gt.loadRes(coco["annotations"])  # its annotations a COCO results list
    assert sorted(results.getImgIds()) == [1, 2] and len(results.getAnnIds(imgIds=[1])) == 2


def test_dicom_and_jpeg_frames_give_the_boxes_of_their_png(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _write_dicom(src / "framed.dcm", _framed_frame())
    Image.fromarray(_plain_frame()).save(src / "plain.jpg", quality=95)
    out = tmp_path / "out"
    _predictor(crop_frame=True)(str(src), str(out))
    found = _boxes_by_file(out)
    assert found["framed.dcm"][0][0] == _expected_xyxy(STUB_BOXES[BIG], IMAGE_AREA)  # the crop found in the DICOM
    assert found["plain.jpg"][0][0] == _expected_xyxy(STUB_BOXES[BIG], (0, 0, *PLAIN))
    for name, shape in (("framed", FRAMED), ("plain", PLAIN)):
        with Image.open(out / "figures" / f"{name}.png") as im:
            assert im.size == (shape[1], shape[0])


def test_unreadable_file_is_skipped_with_its_reason(frames, tmp_path):
    (frames / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    out = tmp_path / "out"
    summary = _predictor()(str(frames), str(out))
    assert summary.num_images == 3 and [f for f, _ in summary.failed] == ["broken.png"]
    rows = {r["file"]: r for r in _read_csv(out / "predictions.csv")}
    assert rows["broken.png"]["status"] == "error" and rows["broken.png"]["error"]
    assert rows["broken.png"]["n_boxes"] == "" and rows["plain.png"]["status"] == "ok"
    assert set(_boxes_by_file(out)) == {"framed.png", "plain.png"}
    coco = json.loads((out / "detections.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["framed.png", "plain.png"]
    assert not (out / "figures" / "broken.png").exists()


def test_frames_without_a_box_are_listed_with_zero_boxes(frames, tmp_path):
    out = tmp_path / "out"
    _predictor(StubDetector(empty=True))(str(frames), str(out))
    rows = _read_csv(out / "predictions.csv")
    assert [(r["file"], r["n_boxes"], r["max_score"], r["status"]) for r in rows] == [
        ("framed.png", "0", "", "ok"), ("plain.png", "0", "", "ok")]
    assert _read_csv(out / "detections.csv") == [] and (out / "detections.csv").read_text().startswith("file,x1,")
    coco = json.loads((out / "detections.json").read_text())
    assert len(coco["images"]) == 2 and coco["annotations"] == []
    for name, shape in (("framed", FRAMED), ("plain", PLAIN)):  # the overlay is the frame itself
        overlay = np.asarray(Image.open(out / "figures" / f"{name}.png"))
        frame = _framed_frame() if name == "framed" else _plain_frame()
        assert overlay.shape == (*shape, 3)
        np.testing.assert_array_equal(overlay, np.repeat(frame[..., None], 3, axis=2))


def test_thresholds_select_what_is_written_and_drawn(frames, tmp_path):
    out = tmp_path / "out"
    _predictor(score_threshold=0.5, display_threshold=0.1)(str(frames), str(out))
    assert [s for b, s, _ in _boxes_by_file(out)["plain.png"]] == [0.9]  # 0.2 and 0.01 below 0.5

    out = tmp_path / "out2"
    _predictor(score_threshold=0.0)(str(frames), str(out))
    assert [s for b, s, _ in _boxes_by_file(out)["plain.png"]] == [0.9, 0.2, 0.01]
    # the overlay of the plain frame (uniform 128): the 0.9 box is drawn, the 0.2 and 0.01 boxes (< 0.3) are not
    overlay = np.asarray(Image.open(out / "figures" / "plain.png")).astype(int)
    assert overlay.shape == (*PLAIN, 3)
    x1, y1, x2, y2 = _expected_xyxy(STUB_BOXES[BIG], (0, 0, *PLAIN))  # 25, 25, 125, 75
    for r, c in ((int(y1), 60), (int(y2) - 1, 60), (50, int(x1)), (50, int(x2) - 1)):  # the four sides
        assert overlay[r, c].tolist() == [255, 64, 64]
    assert overlay[int(y1) + 2, 60].tolist() == overlay[50, int(x1) + 2].tolist() == [128] * 3  # inside: the frame
    sx1, sy1, _, _ = _expected_xyxy(STUB_BOXES[SMALL], (0, 0, *PLAIN))  # 12.5, 6.25: first pixel (6, 12)
    assert overlay[10, int(sx1)].tolist() == [128] * 3 and overlay[int(sy1), 30].tolist() == [128] * 3


def test_overlays_can_be_switched_off_and_bad_settings_are_refused(frames, tmp_path):
    out = tmp_path / "out"
    _predictor(save_figures=False)(str(frames), str(out))
    assert not (out / "figures").exists() and (out / "detections.json").is_file()
    with pytest.raises(ValueError, match="class_names"):
        _predictor(class_names=())
    with pytest.raises(ValueError, match="score_threshold"):
        _predictor(score_threshold=1.5)
    with pytest.raises(ValueError, match="inside the input folder"):
        _predictor()(str(frames), str(frames / "out"))


def test_draw_detections_labels_and_size(tmp_path):
    path = draw_detections(str(tmp_path / "o" / "a.png"), np.zeros((1, 30, 50)), [[0, 0, 50, 30]], [0.5], ["mass"])
    overlay = np.asarray(Image.open(path))
    assert overlay.shape == (30, 50, 3)
    assert overlay[0, 10].tolist() == overlay[29, 10].tolist() == overlay[10, 49].tolist() == [255, 64, 64]


def test_checkpoint_is_loaded_into_the_detectors_network(frames, tmp_path):
    torch.manual_seed(0)
    trained = StubDetector()
    torch.save(trained.network.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(1)
    detector = StubDetector()
    _predictor(detector, ckpt_path=str(tmp_path / "model.pt"))(str(frames), str(tmp_path / "out"))
    torch.testing.assert_close(detector.network.weight, trained.network.weight, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# the real detector
# --------------------------------------------------------------------------------------------
def test_real_retinanet_on_demo_frames_end_to_end(tmp_path):
    from networks.nets.retinanet import build_detector, retinanet
    from pipelines.data.demo.scanner_frames import make_scanner_frame_demo

    src = tmp_path / "frames"
    make_scanner_frame_demo(str(src), num_frames=2, height=240, width=320, seed=0, dark_fraction=0.0)
    torch.manual_seed(0)
    network = retinanet(in_channels=3, depth=10, returned_layers=(1, 2), fpn_channels=16,
                        block_inplanes=(8, 16, 32, 64))
    detector = build_detector(network, anchor_sizes=((8,), (16,), (32,)), score_thresh=0.0, detections_per_img=5)
    out = tmp_path / "out"
    summary = DetectionPredictor(detector, image_size=GRID, crop_frame=True, clahe=True, channels=3,
                                 score_threshold=0.0)(str(src), str(out))
    assert summary.num_images == 2 and summary.num_failed == 0
    rows = _read_csv(out / "predictions.csv")
    found = _boxes_by_file(out)
    for r in rows:
        assert r["status"] == "ok" and int(r["n_boxes"]) == len(found.get(r["file"], [])) <= 5
        for (x1, y1, x2, y2), score, label in found.get(r["file"], []):
            assert 0 <= x1 <= x2 <= int(r["width"]) and 0 <= y1 <= y2 <= int(r["height"]) and label == "lesion"
        with Image.open(out / "figures" / r["file"]) as im:
            assert im.size == (int(r["width"]), int(r["height"])) == (320, 240)
    assert sum(int(r["n_boxes"]) for r in rows) > 0  # score threshold 0: random weights still give boxes
    assert len(json.loads((out / "detections.json").read_text())["images"]) == 2
