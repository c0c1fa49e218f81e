"""Folder prediction of the 2D bundles: every PNG / JPEG / DICOM image of a folder -> class probabilities (CSV),
method-specific outputs (masks, boxes, ...) in the original image grid, optional figures.

:class:`FolderPredictor` is the loop, separate from the trainer (as nnU-Net's predictor): it reads each file
(:func:`load_input_image`, from :mod:`transforms.io`, re-exported here), applies the bundle's own evaluation
pre-processing (a MONAI dictionary transform that keeps the image's meta data, so that MONAI's
:class:`~monai.transforms.Invertd` maps network-grid outputs back to the original image), runs the network and writes
``predictions.csv``. What a method adds to that is one hook, :meth:`FolderPredictor.handle_output`;
:class:`LANetPredictor` (LA-Net's ``{"logits", "mask"}``) overrides it to write the lesion mask. A detector (boxes) or a segmenter (masks) subclasses it the same way.

A file that cannot be read (corrupt, an unsupported DICOM) is skipped: its CSV row has ``status = "error"`` and
the reason in ``error``, the others are predicted, and the count is logged and returned. Under
``torch.distributed`` only rank 0 predicts and writes.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
import torch.nn as nn
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    Invertd,
    InvertibleTransform,
)
from PIL import Image

from networks.nets.lanet import split_outputs
from transforms import recipes
from transforms.io import LoadFramed, load_input_image
from transforms.ultrasound import ScannerFrameCropd

from ..bundles.paths import check_output_dir
from ..handlers.checkpoints import load_weights
from ..metrics.localisation import upsample_mask
from .exported import is_exported_network

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderPredictor",
    "LANetPredictor",
    "PredictionSummary",
    "infer_folder",
    "list_input_images",
    "load_input_image",
]

logger = logging.getLogger(__name__)

#: File types :class:`FolderPredictor` reads (DICOM through MONAI's ITK reader).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm")


_MASK_FILE = re.compile(r"_mask(?:_\d+)?\.png$", re.IGNORECASE)


def list_input_images(input_dir: str) -> list[str]:
    """Image files (:data:`IMAGE_EXTENSIONS`) directly in ``input_dir``, sorted; BUSI ``*_mask*.png`` are skipped.

    Raises:
        FileNotFoundError: ``input_dir`` is not a folder, or it holds no image.
    """
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"input folder {input_dir} does not exist.")
    files = sorted(
        os.path.join(input_dir, n) for n in os.listdir(input_dir)
        if n.lower().endswith(IMAGE_EXTENSIONS) and not _MASK_FILE.search(n)
        and os.path.isfile(os.path.join(input_dir, n))
    )
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_EXTENSIONS)} images in {input_dir}.")
    return files


@dataclass
class PredictionSummary:
    """What a folder prediction did: the output folder and CSV, how many files were read, which failed and why."""

    pred_dir: str
    csv_path: str | None
    num_images: int
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def num_failed(self) -> int:
        return len(self.failed)


class FolderPredictor:
    """Predict every image of a folder with a trained 2D bundle network.

    For each file of :func:`list_input_images`: :meth:`load` -> ``preprocessing`` -> the network on ``device`` ->
    class probabilities (softmax of the logits; :func:`networks.nets.lanet.split_outputs` accepts a logits tensor,
    a ``{"logits", ...}`` dict or a tuple) -> :meth:`handle_output` (the method's own outputs) -> optional figure.
    Writes ``<pred_dir>/predictions.csv``: ``file``, ``prob_<class>`` ..., ``prediction``, the columns
    :meth:`handle_output` returns, ``status`` (``ok`` / ``error``) and ``error`` (why a file was skipped).

    Args:
        network: the bundle's network (weights from ``ckpt_path``, loaded once on first use).
        class_names: names indexed by class.
        preprocessing: the bundle's evaluation transform of ``{"image": MetaTensor (1, H, W) in [0, 255]}``, a MONAI
            invertible transform (a ``Compose``) that keeps the image a MetaTensor, so that its invertible steps can
            be undone (:meth:`to_original_frame`). Default
            :func:`transforms.recipes.busi_image_transforms` (``image_size``).
        image_size: network input size of the default ``preprocessing``.
        ckpt_path: checkpoint to load (see :func:`pipelines.handlers.checkpoints.load_weights`); None keeps the
            network's weights.
        device: where the network runs.
        save_figures: also write ``<pred_dir>/figures/<name>.png`` (see :meth:`save_figure`).
        target_layer: Grad-CAM layer of the figures (:func:`pipelines.evaluation.saliency.grad_cam`); None omits it.
        image_key: key of the image in the data dictionary.
        crop_frame: crop each image to its scanner image area first (:class:`transforms.ultrasound.ScannerFrameCropd`:
            the GUI text, scale markers and colour bars around an ultrasound screen capture are cut; a mostly black
            or blank frame is kept whole), then apply ``preprocessing`` to the crop. Outputs are mapped back into
            the whole frame: maps of the crop are pasted into a zero frame (masks and figures keep the file's size),
            and ``predictions.csv`` gets the crop's ``crop_x1``, ``crop_y1``, ``crop_x2``, ``crop_y2`` (pixel
            corners, x = column, y = row, exclusive maxima).
    """

    csv_name = "predictions.csv"

    def __init__(
        self,
        network: nn.Module,
        class_names: Sequence[str],
        preprocessing: InvertibleTransform | None = None,
        image_size: int = 256,
        ckpt_path: str | None = None,
        device: torch.device | str = "cpu",
        save_figures: bool = False,
        target_layer: str | None = "backbone.layer4",
        image_key: str = "image",
        crop_frame: bool = False,
    ) -> None:
        self.network = network
        self.class_names = list(class_names)
        self.preprocessing = preprocessing if preprocessing is not None else recipes.busi_image_transforms(image_size, image_key)
        self.crop_frame = bool(crop_frame)
        if self.crop_frame:  # one invertible Compose, so that Invertd undoes the crop (zero padding) with the rest
            crop = ScannerFrameCropd(image_key, box_keys=(), crop_box_key="crop_box")
            self.preprocessing = Compose([crop, self.preprocessing])
        self.ckpt_path = ckpt_path
        self.device = torch.device(device)
        self.save_figures, self.target_layer, self.image_key = bool(save_figures), target_layer, image_key
        self._prepared = False
        self._inverter = Invertd(
            keys="pred", transform=self.preprocessing, orig_keys=image_key, nearest_interp=False, to_tensor=True
        )

    # ---------------------------------------------------------------- hooks
    def load(self, path: str) -> dict[str, Any]:
        """``{image_key: MetaTensor (1, H, W)`` float32 in [0, 255]}`` of one file (:func:`load_input_image`)."""
        return LoadFramed(self.image_key)({self.image_key: path})

    def handle_output(self, output: Any, data: dict[str, Any], name: str, pred_dir: str) -> dict[str, Any]:
        """The method's own outputs of one image: write its files into ``pred_dir`` (named after ``name``, the
        input file without extension) and return extra CSV columns. ``output`` is the network's raw output for
        the batch of one, ``data`` the pre-processed item (:meth:`to_original_frame` maps network-grid maps back).
        A figure's mask probability may be left in ``data["pred_mask"]`` (``(1, H, W)`` in the original frame).
        The base class adds nothing."""
        return {}

    # ---------------------------------------------------------------- the loop
    def prepare(self) -> None:
        """Load the checkpoint (once), move the network to ``device`` and set it to eval mode. An exported network
        (:func:`~pipelines.predictors.exported.is_exported_network`: TorchScript / ONNX) keeps its own weights and has
        no layers for Grad-CAM: ``ckpt_path`` and ``target_layer`` are not used for it."""
        if is_exported_network(self.network):
            if not self._prepared:
                logger.info("exported network: its own weights are used, the checkpoint is not read.")
            self.ckpt_path, self.target_layer = None, None
        if not self._prepared and self.ckpt_path is not None:
            load_weights(self.network, self.ckpt_path, required=True)
        self._prepared = True
        self.network.to(self.device).eval()

    def to_original_frame(self, pred: torch.Tensor, data: Mapping[str, Any]) -> torch.Tensor:
        """A map ``(C, h, w)`` on the network input grid -> ``(C, H, W)`` on the original image, by inverting
        ``preprocessing`` with MONAI's ``Invertd`` (here: the centre crop is zero-padded back, then resized
        bilinearly to the image size; with ``crop_frame`` the result is then zero-padded back into the frame)."""
        pred = MetaTensor(torch.as_tensor(pred).detach().float().cpu())
        inverted = self._inverter({"pred": pred, self.image_key: data[self.image_key]})
        return torch.as_tensor(inverted["pred"])

    def network_input(self, data: Mapping[str, Any]) -> torch.Tensor:
        """The batch of one on ``device``, a plain tensor (the meta data stay with ``data``)."""
        return torch.as_tensor(data[self.image_key]).float()[None].to(self.device)

    def class_probabilities(self, output: Any) -> torch.Tensor:
        """Softmax of the logits of a batch of one -> ``(num_classes,)``."""
        logits, _ = split_outputs(output)
        return torch.softmax(logits.float(), dim=1)[0].cpu()

    def save_figure(self, path: str, data: Mapping[str, Any], probs: torch.Tensor) -> None:
        """Image, predicted mask contour and probability (``data["pred_mask"]``, when a hook set it) and Grad-CAM
        (``target_layer``) in the original frame, titled with the predicted class
        (:func:`pipelines.evaluation.lanet.save_lanet_figure`)."""
        from ..evaluation.lanet import save_lanet_figure
        from ..evaluation.saliency import grad_cam

        cam = None
        if self.target_layer:
            cam = self.to_original_frame(grad_cam(self.network, self.network_input(data), None, self.target_layer)[0],
                                         data)
        original = data.get("original")
        save_lanet_figure(path, original, None, data.get("pred_mask"), cam, self.class_names, probs.numpy())

    def __call__(self, input_dir: str, pred_dir: str) -> PredictionSummary:
        """Predict every image of ``input_dir`` into ``pred_dir``.

        Raises:
            ValueError: ``pred_dir`` is ``input_dir`` or inside it.
            FileNotFoundError: ``input_dir`` is missing or holds no image.
        """
        check_output_dir(pred_dir, input_dir)
        files = list_input_images(input_dir)
        if idist.get_rank() != 0:
            return PredictionSummary(pred_dir, None, 0)
        self.prepare()
        os.makedirs(pred_dir, exist_ok=True)
        if self.save_figures:
            os.makedirs(os.path.join(pred_dir, "figures"), exist_ok=True)
        rows, failed = [], []
        for path in files:
            file, name = os.path.basename(path), os.path.splitext(os.path.basename(path))[0]
            try:
                raw = self.load(path)
            except (OSError, ValueError, RuntimeError) as e:  # unreadable / corrupt / unsupported file
                reason = f"{type(e).__name__}: {e}"
                logger.warning(f"skipping {path}: {reason}")
                failed.append((file, reason))
                rows.append({"file": file, "status": "error", "error": reason})
                continue
            data = dict(self.preprocessing(raw))  # a failure here is the configuration's, not the file's: raised
            data["original"] = raw[self.image_key]
            with torch.no_grad():
                output = self.network(self.network_input(data))
            probs = self.class_probabilities(output)
            row = {"file": file}
            if probs is not None:  # None: a network without a class output (a segmenter)
                row.update({f"prob_{c}": float(p) for c, p in zip(self.class_names, probs)})
                row["prediction"] = self.class_names[int(torch.argmax(probs))]
            if self.crop_frame:
                r0, c0, r1, c1 = (int(v) for v in torch.as_tensor(data["crop_box"]).tolist())
                row.update({"crop_x1": c0, "crop_y1": r0, "crop_x2": c1, "crop_y2": r1})
            row.update(self.handle_output(output, data, name, pred_dir))
            if self.save_figures:
                self.save_figure(os.path.join(pred_dir, "figures", f"{name}.png"), data, probs)
            rows.append({**row, "status": "ok", "error": ""})
        csv_path = os.path.join(pred_dir, self.csv_name)
        columns = ["file", *(f"prob_{c}" for c in self.class_names), "prediction"] if self.class_names else ["file"]
        columns += [k for r in rows for k in r if k not in columns and k not in ("status", "error")]
        columns = list(dict.fromkeys(columns)) + ["status", "error"]
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        summary = PredictionSummary(pred_dir, csv_path, len(files), failed)
        message = f"predicted {len(files) - summary.num_failed} of {len(files)} images into {csv_path}"
        if failed:
            logger.warning(f"{message}; {summary.num_failed} skipped (unreadable, see the 'error' column).")
        else:
            logger.info(message + ".")
        return summary


class LANetPredictor(FolderPredictor):
    """:class:`FolderPredictor` for LA-Net (``{"logits", "mask"}``): also writes ``<name>_mask.png``, the mask
    probability map upsampled bilinearly to the network input, mapped back into the original image
    (:meth:`~FolderPredictor.to_original_frame`), thresholded at ``threshold``, stored as 0/255 8-bit.
    A network without a mask output (a plain classifier) writes no mask.

    Args:
        threshold: mask probability threshold.
        kwargs: see :class:`FolderPredictor`.
    """

    def __init__(self, network: nn.Module, class_names: Sequence[str], threshold: float = 0.5, **kwargs) -> None:
        super().__init__(network, class_names, **kwargs)
        self.threshold = float(threshold)

    def handle_output(self, output: Any, data: dict[str, Any], name: str, pred_dir: str) -> dict[str, Any]:
        _, mask = split_outputs(output)
        if mask is None:
            return {}
        prob = self.to_original_frame(upsample_mask(mask, data[self.image_key].shape[1:])[0], data)
        data["pred_mask"] = prob
        binary = (prob[0] >= self.threshold).numpy().astype(np.uint8) * 255
        Image.fromarray(binary, mode="L").save(os.path.join(pred_dir, f"{name}_mask.png"))
        return {}


def infer_folder(
    network: nn.Module,
    input_dir: str,
    pred_dir: str,
    class_names: Sequence[str],
    ckpt_path: str | None = None,
    image_size: int = 256,
    device: torch.device | str = "cpu",
    threshold: float = 0.5,
    preprocessing: InvertibleTransform | None = None,
    save_figures: bool = False,
) -> str:
    """Classify and localise every image of ``input_dir`` with LA-Net (:class:`LANetPredictor`); returns
    ``pred_dir``. Kept for scripts; the bundle uses the predictor as a component."""
    LANetPredictor(
        network, class_names, threshold=threshold, preprocessing=preprocessing, image_size=image_size,
        ckpt_path=ckpt_path, device=device, save_figures=save_figures,
    )(input_dir, pred_dir)
    return pred_dir
