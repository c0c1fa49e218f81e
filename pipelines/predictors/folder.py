"""Folder prediction of the 2D bundles: every PNG / JPEG / DICOM image of a folder -> class probabilities (CSV),
method-specific outputs (masks, boxes, ...) in the original image grid, optional figures.

:class:`FolderPredictor` is the loop, separate from the trainer (as nnU-Net's predictor): it reads each file
(:func:`load_input_image`), applies the bundle's own evaluation pre-processing (a MONAI dictionary transform that
keeps the image's meta data, so that MONAI's :class:`~monai.transforms.Invertd` maps network-grid outputs back to
the original image), runs the network and writes ``predictions.csv``. What a method adds to that is one hook,
:meth:`FolderPredictor.handle_output`; :class:`LANetPredictor` (LA-Net's ``{"logits", "mask"}``) overrides it to
write the lesion mask. A detector (boxes) or a segmenter (masks) subclasses it the same way.

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
    Invertd,
    InvertibleTransform,
)
from PIL import Image

from networks.nets.lanet import split_outputs
from transforms import recipes

from ..bundles.paths import check_output_dir
from ..handlers.checkpoints import load_weights
from ..metrics.localisation import upsample_mask

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


# DICOM attributes of the grayscale display pipeline (PS3.3 C.7.6.3 Image Pixel, C.11.2 VOI LUT), as ITK metadata keys
_PHOTOMETRIC, _BITS_STORED, _PIXEL_REPRESENTATION = "0028|0004", "0028|0101", "0028|0103"
_WINDOW_CENTER, _WINDOW_WIDTH, _VOI_LUT_FUNCTION = "0028|1050", "0028|1051", "0028|1056"
_RESCALE_INTERCEPT, _RESCALE_SLOPE = "0028|1052", "0028|1053"


def _dicom_number(meta: Mapping, tag: str, default: float | None = None) -> float | None:
    """First value of a numeric DICOM attribute in ITK's metadata (``"40\\400 "`` -> 40.0); ``default`` when it is
    absent or not a finite number."""
    text = str(meta.get(tag, "")).split("\\")[0].strip()
    try:
        value = float(text)
    except ValueError:
        return default
    return value if np.isfinite(value) else default


def _voi_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray | None:
    """The VOI window of DICOM PS3.3 C.11.2.1.2 (``LINEAR``, ``LINEAR_EXACT``, ``SIGMOID``; any other function is
    read as ``LINEAR``, the default) from modality values onto [0, 255]; None for a width the function forbids."""
    if function == "SIGMOID":
        if width <= 0:
            return None
        with np.errstate(over="ignore"):
            return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return None if width <= 0 else np.clip((values - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width < 1:
        return None
    if width == 1:  # the linear ramp degenerates to a step at c - 0.5
        return np.where(values > center - 0.5, 255.0, 0.0)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0) * 255.0


def _grayscale_display(values: np.ndarray, meta: Mapping) -> np.ndarray:
    """A grayscale DICOM frame as ITK read it -> display values in [0, 255], bright = dense.

    ITK's GDCM reader applies Rescale Slope / Intercept (modality values) and converts MONOCHROME1 to MONOCHROME2 by
    inverting the *stored* values (``s -> 2**BitsStored - 1 - s``, ``s -> -1 - s`` for signed pixels) before the
    rescale. The modality values are recovered from that, windowed with the first Window Center / Width, and the
    window's output is inverted for MONOCHROME1 (whose minimum is white after the VOI transform), as a DICOM viewer
    shows the image; without a usable window the modality values are min-max scaled instead.
    """
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values)
    monochrome1 = str(meta.get(_PHOTOMETRIC, "")).strip().upper() == "MONOCHROME1"
    if monochrome1:
        slope, intercept = _dicom_number(meta, _RESCALE_SLOPE, 1.0), _dicom_number(meta, _RESCALE_INTERCEPT, 0.0)
        signed = str(meta.get(_PIXEL_REPRESENTATION, "0")).strip() == "1"
        largest = -1.0 if signed else 2.0 ** int(_dicom_number(meta, _BITS_STORED, 16.0)) - 1.0
        values = (slope * largest + 2.0 * intercept) - values  # undo ITK's inversion: the modality values again
    center, width = _dicom_number(meta, _WINDOW_CENTER), _dicom_number(meta, _WINDOW_WIDTH)
    function = str(meta.get(_VOI_LUT_FUNCTION, "")).strip().upper()
    shown = None if center is None or width is None else _voi_window(values, center, width, function)
    if shown is None:
        lo, hi = float(values.min()), float(values.max())
        shown = (values - lo) * (255.0 / (hi - lo))
    return 255.0 - shown if monochrome1 else shown


def load_input_image(path: str) -> np.ndarray:
    """One image as float32 ``(1, H, W)`` in [0, 255], for radiographs with bright = dense.

    * PNG / JPEG: :func:`transforms.busi.load_busi_image` (one channel: alpha dropped, e.g. of the RGBA PNGs among
      NIH ChestX-ray14, colour -> ITU-R 601 luminance, 16-bit values scaled by 255 / 65535).
    * DICOM (one frame) via MONAI's ``LoadImage`` with the ITK reader. Grayscale: Rescale Slope / Intercept applied
      (modality values), then the first Window Center / Width of the file (VOI LUT Function ``LINEAR``,
      ``LINEAR_EXACT`` or ``SIGMOID``, DICOM PS3.3 C.11.2.1.2) or, without a window, a min-max rescale; MONOCHROME1
      (minimum is white) is inverted after the window, so that dense is bright as in MONOCHROME2. A VOI LUT Sequence
      is not read (ITK's metadata does not carry sequences). RGB: luminance, min-max rescaled. A constant frame
      gives zeros.

    Raises:
        ValueError: a DICOM file with several frames or an unsupported number of components (naming the file).
    """
    from transforms.busi import load_busi_image

    if not path.lower().endswith(".dcm"):
        return load_busi_image(path)
    from monai.data.utils import is_no_channel
    from monai.transforms import LoadImage

    data = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=False)(path)
    img = np.asarray(data, dtype=np.float32)
    grayscale = True
    # (x, y[, frames]) grayscale or (x, y[, frames], components): only the reader's channel flag tells a 3- or
    # 4-frame grayscale volume from one RGB(A) frame.
    if not is_no_channel(data.meta.get("original_channel_dim", float("nan"))):
        if img.shape[-1] in (3, 4):  # RGB(A)
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            grayscale = False
        elif img.shape[-1] == 1:
            img = img[..., 0]
        else:
            raise ValueError(f"{path}: unsupported number of components {img.shape[-1]} (shape {tuple(img.shape)}).")
    while img.ndim > 2 and img.shape[-1] == 1:  # one frame: ITK reads a DICOM slice as (x, y, 1)
        img = img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"{path}: expected one 2D frame, got shape {tuple(data.shape)}.")
    img = img.T  # ITK arrays are (x, y); images are (rows, columns)
    if grayscale:
        return _grayscale_display(img, data.meta)[None].astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)
    return img[None].astype(np.float32)


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
    ) -> None:
        self.network = network
        self.class_names = list(class_names)
        self.preprocessing = preprocessing if preprocessing is not None else recipes.busi_image_transforms(image_size, image_key)
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
        image = load_input_image(path)
        meta = {"filename_or_obj": path, "spatial_shape": np.asarray(image.shape[1:])}
        return {self.image_key: MetaTensor(torch.from_numpy(image), meta=meta)}

    def handle_output(self, output: Any, data: dict[str, Any], name: str, pred_dir: str) -> dict[str, Any]:
        """The method's own outputs of one image: write its files into ``pred_dir`` (named after ``name``, the
        input file without extension) and return extra CSV columns. ``output`` is the network's raw output for
        the batch of one, ``data`` the pre-processed item (:meth:`to_original_frame` maps network-grid maps back).
        A figure's mask probability may be left in ``data["pred_mask"]`` (``(1, H, W)`` in the original frame).
        The base class adds nothing."""
        return {}

    # ---------------------------------------------------------------- the loop
    def prepare(self) -> None:
        """Load the checkpoint (once), move the network to ``device`` and set it to eval mode."""
        if not self._prepared and self.ckpt_path is not None:
            load_weights(self.network, self.ckpt_path, required=True)
        self._prepared = True
        self.network.to(self.device).eval()

    def to_original_frame(self, pred: torch.Tensor, data: Mapping[str, Any]) -> torch.Tensor:
        """A map ``(C, h, w)`` on the network input grid -> ``(C, H, W)`` on the original image, by inverting
        ``preprocessing`` with MONAI's ``Invertd`` (here: the centre crop is zero-padded back, then resized
        bilinearly to the image size)."""
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
