"""Folder prediction of a lesion detector (``bundles/busi_detection``): every PNG / JPEG / DICOM frame of a folder ->
boxes with scores in the frame's own pixel grid, as a CSV table, a COCO-style JSON file and an overlay PNG per frame.

:class:`DetectionPredictor` is the shared :class:`~pipelines.predictors.FolderPredictor` run with a MONAI
:class:`~monai.apps.detection.networks.retinanet_detector.RetinaNetDetector` in eval mode (its output per image:
``{"box": (N, 4), "label": (N,), "label_scores": (N,)}`` on the network grid) and four hooks overridden: no class
probabilities (:meth:`~DetectionPredictor.class_probabilities`), the boxes of each frame mapped back to the original
frame (:meth:`~DetectionPredictor.handle_output`: the scanner-frame crop and the resize of the pre-processing undone
by :func:`transforms.recipes.boxes_to_original`), the overlay (:meth:`~DetectionPredictor.save_figure`) and the
checkpoint loaded into the detector's network (:meth:`~DetectionPredictor.prepare`). Calling it writes, besides the
base class's ``predictions.csv``:

``detections.csv``
    one row per box with a score of at least ``score_threshold``, frames in file order, boxes by decreasing score:
    ``file, x1, y1, x2, y2, score, label``. ``x`` is the column, ``y`` the row, in pixels of the original frame,
    pixel corners: ``(x1, y1)`` is the top-left corner of the first pixel inside the box, ``(x2, y2)`` the
    bottom-right corner of the last one (so ``x2 - x1`` is the width; a box around the single pixel in row ``r``,
    column ``c`` is ``c, r, c + 1, r + 1``), the convention of the box files the datalists read. Coordinates are
    rounded to :data:`COORD_DECIMALS`, scores to :data:`SCORE_DECIMALS` decimals; ``label`` is the class name.
``detections.json``
    the same boxes as a COCO dataset file with scores::

        {"info": {...}, "images": [{"id", "file_name", "width", "height"}],
         "categories": [{"id", "name"}],
         "annotations": [{"id", "image_id", "file_name", "category_id", "bbox": [x, y, w, h], "area", "score"}]}

    ``images`` lists every frame that was read (ids 1, 2, ... in file order, also the frames without a box; a file
    that could not be read is not listed), ``category_id`` is the detector's label + 1 (COCO ids start at 1), ``bbox``
    is ``[x1, y1, x2 - x1, y2 - y1]`` of ``detections.csv`` (COCO's pixel-corner ``[x, y, w, h]``), ``area`` is
    ``w * h``. ``annotations`` is a COCO *results* list as ``pycocotools.coco.COCO.loadRes`` reads it, and the whole
    file is a COCO dataset file (``COCO(path)``, or the datalists' COCO reader, e.g. to review the boxes).
``predictions.csv``
    one row per input file: ``file, n_boxes`` (the boxes written), ``max_score`` (empty without a box), ``height,
    width`` (the original frame), with ``crop_frame`` the crop ``crop_x1, crop_y1, crop_x2, crop_y2``, ``status`` and
    ``error`` (an unreadable file is skipped with its reason,
    see :class:`~pipelines.predictors.FolderPredictor`). A frame without a box has ``n_boxes`` 0 and status ``ok``.
``figures/<name>.png`` (``save_figures``)
    the frame at its own size with the boxes of score at least ``display_threshold`` drawn on it and their scores.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from monai.transforms import InvertibleTransform
from PIL import Image, ImageDraw, ImageFont

from transforms import recipes

from ..handlers.checkpoints import load_weights
from .exported import is_exported_network
from .folder import FolderPredictor, PredictionSummary

__all__ = [
    "COORD_DECIMALS",
    "DETECTION_COLUMNS",
    "DetectionPredictor",
    "SCORE_DECIMALS",
    "boxes_to_xyxy_columns",
    "draw_detections",
]

#: decimals of the box coordinates written (pixels)
COORD_DECIMALS = 4
#: decimals of the scores written
SCORE_DECIMALS = 6
#: columns of ``detections.csv``
DETECTION_COLUMNS = ("file", "x1", "y1", "x2", "y2", "score", "label")


def boxes_to_xyxy_columns(boxes: Any) -> np.ndarray:
    """Boxes ``(N, 4)`` in the project's memory order ``[row_min, col_min, row_max, col_max]`` -> ``(N, 4)``
    ``[x1, y1, x2, y2]`` (``x`` = column, ``y`` = row), the order of the files on disk; float64."""
    arr = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    arr = arr.reshape(-1, 4)
    return arr[:, [1, 0, 3, 2]]


def _gray_uint8(image: Any) -> np.ndarray:
    """``(H, W)`` or ``(1, H, W)`` in [0, 255] -> ``(H, W)`` uint8."""
    arr = np.asarray(image.detach().cpu().float() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) or (1, H, W) frame, got shape {arr.shape}.")
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def draw_detections(
    path: str,
    image: Any,
    boxes_xyxy: Any,
    scores: Sequence[float],
    labels: Sequence[str] | None = None,
    colour: tuple[int, int, int] = (255, 64, 64),
) -> str:
    """Write the frame at its own size (an RGB PNG of ``W`` x ``H`` pixels) with boxes and their scores drawn on it.

    Args:
        path: output PNG (folders are created).
        image: the frame ``(H, W)`` or ``(1, H, W)`` in [0, 255].
        boxes_xyxy: ``(N, 4)`` ``[x1, y1, x2, y2]`` pixel corners (x = column) in the frame.
        scores: ``N`` scores, printed above each box (with the label when ``labels`` is given).
        labels: ``N`` label names, or None.
        colour: RGB of boxes and text.

    Returns:
        ``path``.
    """
    gray = _gray_uint8(image)
    height, width = gray.shape
    canvas = Image.fromarray(np.repeat(gray[..., None], 3, axis=2), mode="RGB")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    line = max(1, round(min(height, width) / 256))
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        # pixel corners -> the first and last pixel inside the box (PIL draws both end points)
        left, top = int(np.floor(x1)), int(np.floor(y1))
        right, bottom = max(left, int(np.ceil(x2)) - 1), max(top, int(np.ceil(y2)) - 1)
        draw.rectangle([left, top, right, bottom], outline=colour, width=line)
        text = f"{scores[k]:.2f}" if labels is None else f"{labels[k]} {scores[k]:.2f}"
        tx, ty = left, top - 12 if top >= 12 else bottom + 2
        draw.text((min(tx, max(0, width - 6 * len(text))), min(ty, max(0, height - 12))), text, fill=colour, font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path, format="png")
    return path


class DetectionPredictor(FolderPredictor):
    """Detect lesions in every frame of a folder with a trained RetinaNet detector (see the module docstring for the
    files written).

    For each frame: :meth:`load` (``{"image": (1, H, W)}`` in [0, 255]) -> ``preprocessing`` (the bundle's
    evaluation pre-processing of the image: scanner-frame crop, resize to ``image_size``, CLAHE, channels) -> the
    detector in eval mode -> boxes with a score of at least ``score_threshold`` mapped back to the frame
    (:meth:`to_original_boxes`).

    Args:
        detector: a :class:`~monai.apps.detection.networks.retinanet_detector.RetinaNetDetector` (or a module that
            maps a batch ``(1, C, S, S)`` in eval mode to a list of one ``{box_key, label_key, score_key}`` dict,
            boxes ``[row_min, col_min, row_max, col_max]`` on the network grid).
        class_names: names indexed by the detector's label (BUSI: ``("lesion",)``).
        preprocessing: the image pre-processing of ``{"image": MetaTensor (1, H, W)}``, MONAI invertible, meta data
            kept (``boxes_to_original`` reads them); default :func:`transforms.recipes.detection_image_transforms`
            (``image_size``, ``crop_frame``, ``clahe``, ``channels``).
        image_size: network input size of the default ``preprocessing``.
        crop_frame: the default ``preprocessing`` crops to the scanner's image area first; and ``predictions.csv``
            gets the crop (``crop_box`` of the pre-processed item) as ``crop_x1, crop_y1, crop_x2, crop_y2`` (pixel
            corners, x = column), as the other bundles' predictors write it. Pass it with a given ``preprocessing``
            too (it does not add a second crop).
        clahe: the default ``preprocessing`` applies CLAHE.
        channels: image channels of the default ``preprocessing`` (3: stacked as the seed did, or 1).
        score_threshold: boxes with a lower score are not written.
        display_threshold: boxes with a lower score are not drawn on the overlays.
        ckpt_path: checkpoint of the detector's network (``detector.network``, as training saves it; see
            :func:`pipelines.handlers.checkpoints.load_weights`); None keeps the weights.
        device: where the detector runs.
        save_figures: write the overlays ``figures/<name>.png``.
        image_key: key of the image in the data dictionary.
        box_key, label_key, score_key: keys of the detector's output.
    """

    detections_csv = "detections.csv"
    detections_json = "detections.json"

    def __init__(
        self,
        detector: nn.Module,
        class_names: Sequence[str] = ("lesion",),
        preprocessing: InvertibleTransform | None = None,
        image_size: int = 512,
        crop_frame: bool = False,
        clahe: bool = True,
        channels: int = 3,
        score_threshold: float = 0.05,
        display_threshold: float = 0.45,
        ckpt_path: str | None = None,
        device: torch.device | str = "cpu",
        save_figures: bool = True,
        image_key: str = "image",
        box_key: str = "box",
        label_key: str = "label",
        score_key: str = "label_scores",
    ) -> None:
        if preprocessing is None:
            preprocessing = recipes.detection_image_transforms(
                image_size=image_size, crop_frame=crop_frame, clahe=clahe, channels=channels, image_key=image_key
            )
        # no class probabilities: the base class gets no class names (its CSV has no prob_<class> columns)
        super().__init__(detector, class_names=(), preprocessing=preprocessing, image_size=image_size,
                         ckpt_path=ckpt_path, device=device, save_figures=save_figures, target_layer=None,
                         image_key=image_key)
        self.label_names = list(class_names)
        if not self.label_names:
            raise ValueError("class_names is empty: a detector needs the name of each label (e.g. ['lesion']).")
        if not 0.0 <= float(score_threshold) <= 1.0 or not 0.0 <= float(display_threshold) <= 1.0:
            raise ValueError(f"score_threshold {score_threshold} and display_threshold {display_threshold} must be "
                             "in [0, 1].")
        self.score_threshold, self.display_threshold = float(score_threshold), float(display_threshold)
        # the crop is part of the detection pre-processing (the base class's own crop_frame stays off)
        self.frame_crop = bool(crop_frame)
        self.box_key, self.label_key, self.score_key = box_key, label_key, score_key
        self._detections: list[dict[str, Any]] = []
        self._images: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- hooks
    def prepare(self) -> None:
        """Load the checkpoint (once) into the detector's network, move the detector to ``device``, eval mode."""
        inner = getattr(self.network, "network", self.network)
        if not self._prepared and self.ckpt_path is not None and not is_exported_network(inner):
            load_weights(inner, self.ckpt_path, required=True)
        self._prepared = True
        self.network.to(self.device).eval()

    def class_probabilities(self, output: Any) -> None:
        """A detector has no image-level class output."""
        return None

    def to_original_boxes(self, boxes: torch.Tensor, data: Mapping[str, Any]) -> np.ndarray:
        """Boxes ``(N, 4)`` on the network grid of the pre-processed item ``data`` -> ``(N, 4)`` float64 in the
        original frame, both ``[row_min, col_min, row_max, col_max]`` (:func:`transforms.recipes.boxes_to_original`:
        the resize and the scanner-frame crop undone)."""
        boxes = torch.as_tensor(boxes).detach().cpu().float().reshape(-1, 4)
        if boxes.shape[0] == 0:
            return np.zeros((0, 4), dtype=np.float64)
        return np.asarray(recipes.boxes_to_original(boxes, data), dtype=np.float64).reshape(-1, 4)

    def detections(self, output: Any, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The boxes of one frame with a score of at least ``score_threshold``, by decreasing score: ``(N, 4)``
        ``[x1, y1, x2, y2]`` in the original frame (float64), scores ``(N,)`` and labels ``(N,)`` (int)."""
        if isinstance(output, (list, tuple)):
            output = output[0]
        scores = torch.as_tensor(output[self.score_key]).detach().cpu().double().reshape(-1)
        labels = torch.as_tensor(output[self.label_key]).detach().cpu().long().reshape(-1)
        boxes = torch.as_tensor(output[self.box_key]).detach().cpu().reshape(-1, 4)
        keep = torch.nonzero(scores >= self.score_threshold).flatten()
        keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
        xyxy = boxes_to_xyxy_columns(self.to_original_boxes(boxes[keep], data))
        return xyxy, scores[keep].numpy(), labels[keep].numpy()

    def label_name(self, label: int) -> str:
        """The class name of a detector label (``str(label)`` when ``class_names`` is shorter)."""
        return self.label_names[label] if 0 <= label < len(self.label_names) else str(label)

    def handle_output(self, output: Any, data: dict[str, Any], name: str, pred_dir: str) -> dict[str, Any]:
        xyxy, scores, labels = self.detections(output, data)
        original = data["original"]
        height, width = (int(s) for s in original.shape[-2:])
        file = os.path.basename(str(original.meta.get("filename_or_obj", name))) if hasattr(original, "meta") else name
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "file_name": file, "width": width, "height": height})
        rounded = np.round(xyxy, COORD_DECIMALS)
        for box, score, label in zip(rounded, scores, labels):
            self._detections.append({
                "file": file, "image_id": image_id, "box": [float(v) for v in box],
                "score": round(float(score), SCORE_DECIMALS), "label": int(label),
            })
        data["pred_detections"] = (rounded, scores, labels)
        row = {
            "n_boxes": len(scores), "max_score": round(float(scores[0]), SCORE_DECIMALS) if len(scores) else "",
            "height": height, "width": width,
        }
        if self.frame_crop and "crop_box" in data:
            r0, c0, r1, c1 = (int(v) for v in torch.as_tensor(data["crop_box"]).tolist())
            row.update({"crop_x1": c0, "crop_y1": r0, "crop_x2": c1, "crop_y2": r1})
        return row

    def save_figure(self, path: str, data: Mapping[str, Any], probs: Any) -> None:
        """The frame at its own size with the boxes of score at least ``display_threshold`` (:func:`draw_detections`)."""
        xyxy, scores, labels = data["pred_detections"]
        shown = scores >= self.display_threshold
        names = [self.label_name(int(k)) for k in labels[shown]] if len(self.label_names) > 1 else None
        draw_detections(path, data["original"], xyxy[shown], scores[shown].tolist(), names)

    # ---------------------------------------------------------------- the run
    def __call__(self, input_dir: str, pred_dir: str) -> PredictionSummary:
        """Detect in every frame of ``input_dir``; write ``predictions.csv``, ``detections.csv``,
        ``detections.json`` and the overlays into ``pred_dir``.

        Raises:
            ValueError: ``pred_dir`` is ``input_dir`` or inside it.
            FileNotFoundError: ``input_dir`` is missing or holds no image.
        """
        self._detections, self._images = [], []
        summary = super().__call__(input_dir, pred_dir)
        if summary.csv_path is not None:  # rank 0
            self.write_detections(pred_dir)
        return summary

    def write_detections(self, pred_dir: str) -> tuple[str, str]:
        """Write the boxes gathered by :meth:`handle_output` as ``detections.csv`` and ``detections.json``."""
        csv_path = os.path.join(pred_dir, self.detections_csv)
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(DETECTION_COLUMNS)
            for d in self._detections:
                writer.writerow([d["file"], *d["box"], d["score"], self.label_name(d["label"])])
        annotations = []
        for k, d in enumerate(self._detections, start=1):
            x1, y1, x2, y2 = d["box"]
            w, h = round(x2 - x1, COORD_DECIMALS), round(y2 - y1, COORD_DECIMALS)
            annotations.append({
                "id": k, "image_id": d["image_id"], "file_name": d["file"], "category_id": d["label"] + 1,
                "bbox": [x1, y1, w, h], "area": round(w * h, COORD_DECIMALS), "score": d["score"],
            })
        coco = {
            "info": {"description": "lesion detections (pipelines.predictors.DetectionPredictor); bbox [x, y, w, h] "
                                    "in pixels of the original frame, x = column, pixel corners",
                     "score_threshold": self.score_threshold},
            "images": self._images,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(self.label_names)],
            "annotations": annotations,
        }
        json_path = os.path.join(pred_dir, self.detections_json)
        with open(json_path, "w") as f:
            json.dump(coco, f, indent=1)
        return csv_path, json_path
