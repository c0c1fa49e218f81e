"""Lung boxes of a prepared chest X-ray task folder: the rectangle around both lungs of every image, the regions of the
attention loss of the localisation-aware classifier (Wu, Japkowicz, Gilbert, Corizzo, Data Mining and Knowledge
Discovery 40(4):47, 2026; :mod:`transforms.chestxray`).

:func:`compute_lung_boxes` runs a trained lung network (a run folder of the ``cxr_lung_segmentation`` bundle) over
every ``<task_dir>/{train,val,test}/<class>/*.png`` as the method does: the image resized to ``size`` x ``size``
(512), the network's foreground probability at its own input size upsampled bilinearly to ``size``, thresholded at
0.5, the box around every foreground pixel (:func:`transforms.chestxray.lung_box_from_mask`; no foreground: the whole
image) mapped back to the original pixel grid (:func:`transforms.chestxray.scale_box`). :func:`lung_boxes_from_masks`
writes the same file from given lung masks (demo data, tests).

The file ``<task_dir>/lung_boxes.csv`` (:data:`~pipelines.data.datalists.chestxray14_prepared.LUNG_BOX_FILE`) has the
columns ``image`` (path relative to ``task_dir``, forward slashes), ``row_min, col_min, row_max, col_max`` (integers
in the original image grid, maxima exclusive; a box scaled back from the 512 grid is widened to whole pixels),
``height, width`` (the original image size) and ``lung_found`` (1, or 0 when the box is the whole image); it is read
by :func:`pipelines.data.read_lung_boxes`.
"""

from __future__ import annotations

import csv
import glob
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Resize
from PIL import Image

from transforms.chestxray import lung_box_from_mask, scale_box

from ..bundles.guards import UserFacingError
from ..data.datalists.chestxray14_prepared import (
    CXR_SPLITS,
    LUNG_BOX_COLUMNS,
    LUNG_BOX_FILE,
)
from ..data.errors import DatasetError
from ..handlers.checkpoints import load_weights
from .folder import load_input_image
from .segmentation import foreground_probability

__all__ = [
    "LungBoxFileExistsError",
    "compute_lung_boxes",
    "load_lung_model",
    "lung_boxes_from_masks",
    "predict_lung_box",
    "task_images",
    "write_lung_boxes",
]

logger = logging.getLogger(__name__)


class LungBoxFileExistsError(FileExistsError, UserFacingError):
    """The lung-box file exists already and overwriting it was not asked for."""


def task_images(task_dir: str) -> list[str]:
    """The images of a prepared task folder, ``<task_dir>/{train,val,test}/<class>/*.png``, as sorted paths relative
    to ``task_dir`` with forward slashes.

    Raises:
        DatasetError: ``task_dir`` is missing or holds no such image.
    """
    if not os.path.isdir(task_dir):
        raise DatasetError(f"task folder {task_dir} does not exist; expected <task_dir>/{{train,val,test}}/<class>/*.png.")
    found = []
    for split in CXR_SPLITS:
        for path in glob.glob(os.path.join(glob.escape(task_dir), split, "*", "*")):
            if path.lower().endswith(".png") and os.path.isfile(path):
                found.append(os.path.relpath(path, task_dir).replace(os.sep, "/"))
    if not found:
        raise DatasetError(f"no images in {task_dir}: expected <task_dir>/{{train,val,test}}/<class>/*.png.")
    return sorted(found)


def _output_path(task_dir: str, output: str | None, overwrite: bool) -> str:
    path = output if output is not None else os.path.join(task_dir, LUNG_BOX_FILE)
    if os.path.exists(path) and not overwrite:
        raise LungBoxFileExistsError(
            f"lung box file {path} exists already; pass --overwrite true to replace it (or --output another file)."
        )
    return path


def _box_row(image: str, box: np.ndarray, height: int, width: int, found: bool) -> dict[str, Any]:
    """A CSV row: the (possibly fractional) box widened to whole pixels and clipped to the image."""
    box = np.asarray(box, dtype=np.float64)
    r0, c0 = (int(np.floor(v + 1e-6)) for v in box[:2])
    r1, c1 = (int(np.ceil(v - 1e-6)) for v in box[2:])
    r0, r1 = min(max(r0, 0), height - 1), min(max(r1, r0 + 1), height)
    c0, c1 = min(max(c0, 0), width - 1), min(max(c1, c0 + 1), width)
    return {"image": image, "row_min": r0, "col_min": c0, "row_max": r1, "col_max": c1, "height": height,
            "width": width, "lung_found": int(found)}


def write_lung_boxes(rows: list[Mapping[str, Any]], path: str) -> str:
    """Write lung-box rows (the columns of the module doc) to ``path`` (through a temporary file, so an interrupted
    run leaves no partial file); returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(LUNG_BOX_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)
    return path


def load_lung_model(
    lung_bundle: str, ckpt_path: str | None = None, device: torch.device | str | None = None
) -> tuple[nn.Module, Callable, float]:
    """The trained lung network of a ``cxr_lung_segmentation`` run, its image pre-processing and threshold.

    Args:
        lung_bundle: a run folder (``configs/inference.yaml`` + ``models/model.pt``, as training writes it) or an
            inference config file (e.g. the bundle's own ``configs/inference.yaml``).
        ckpt_path: the weights; default ``<run folder>/models/model.pt``, or the config's ``ckpt_path``.
        device: where the network runs; default the config's ``device``.

    Returns:
        ``(network in eval mode on device, preprocessing, threshold)``; ``preprocessing`` maps
        ``{"image": MetaTensor (1, H, W) in [0, 255]}`` to the network input.

    Raises:
        FileNotFoundError: no config file or no checkpoint.
    """
    from monai.bundle import ConfigParser

    folder = lung_bundle if os.path.isdir(lung_bundle) else None
    config_file = os.path.join(lung_bundle, "configs", "inference.yaml") if folder else lung_bundle
    if not os.path.isfile(config_file):
        raise FileNotFoundError(
            f"{config_file} does not exist; pass the run folder of a cxr_lung_segmentation training (it holds "
            "configs/inference.yaml and models/model.pt) or an inference config file."
        )
    parser = ConfigParser()
    parser.read_config(config_file)
    if device is not None:
        parser["device"] = str(device)
    if ckpt_path is None:
        ckpt_path = os.path.join(folder, "models", "model.pt") if folder else parser.get_parsed_content("ckpt_path")
    network = parser.get_parsed_content("network_def")
    device = torch.device(device if device is not None else parser.get_parsed_content("device"))
    network = network.to(device)
    load_weights(network, ckpt_path, required=True)
    preprocessing = parser.get_parsed_content("preprocessing")
    threshold = float(parser.get_parsed_content("threshold")) if "threshold" in parser else 0.5
    return network.eval(), preprocessing, threshold


def predict_lung_box(
    network: nn.Module, preprocessing: Callable, image: np.ndarray | torch.Tensor, size: int = 512,
    threshold: float = 0.5,
) -> tuple[np.ndarray, bool]:
    """The lung box of one image in its original grid (the method's procedure, see the module doc).

    Args:
        network: the lung network (eval mode), logits ``(1, C, S, S)`` (:func:`foreground_probability`).
        preprocessing: its image pre-processing of ``{"image": MetaTensor (1, size, size)}``.
        image: ``(1, H, W)`` in [0, 255] (:func:`~pipelines.predictors.load_input_image`).
        size: the grid of the method (512): the image is resized to it, the probability upsampled to it.
        threshold: foreground threshold of the probability.

    Returns:
        ``(box, found)``: ``[row_min, col_min, row_max, col_max]`` float64 in the ``(H, W)`` grid (exclusive maxima;
        the whole image when no lung was found) and whether a lung was found.
    """
    image = torch.as_tensor(image, dtype=torch.float32)
    height, width = int(image.shape[-2]), int(image.shape[-1])
    resized = Resize((size, size), mode="bilinear", anti_aliasing=True)(image)
    data = preprocessing({"image": MetaTensor(torch.as_tensor(resized))})
    device = next(network.parameters()).device
    with torch.no_grad():
        output = network(torch.as_tensor(data["image"]).float()[None].to(device))
    prob = foreground_probability(output).cpu()
    prob = F.interpolate(prob, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    found = bool((prob >= threshold).any())
    box = lung_box_from_mask(prob, threshold=threshold)
    return scale_box(box, (size, size), (height, width)), found


def compute_lung_boxes(
    task_dir: str,
    lung_bundle: str,
    ckpt_path: str | None = None,
    output: str | None = None,
    size: int = 512,
    threshold: float | None = None,
    device: torch.device | str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Compute ``<task_dir>/lung_boxes.csv`` with a trained lung network (see the module doc).

    Args:
        task_dir: a prepared task folder, ``<task_dir>/{train,val,test}/<class>/*.png``.
        lung_bundle: run folder of a ``cxr_lung_segmentation`` training, or an inference config file
            (:func:`load_lung_model`).
        ckpt_path: the weights (default: the run's ``models/model.pt``).
        output: the CSV file (default ``<task_dir>/lung_boxes.csv``).
        size: the method's grid (512).
        threshold: foreground threshold (default: the bundle's, 0.5).
        device: where the network runs (default: the bundle's, CUDA when available).
        overwrite: replace an existing CSV.
        progress: show a tqdm progress bar.

    Returns:
        the CSV path.

    Raises:
        LungBoxFileExistsError: the CSV exists and ``overwrite`` is False (checked before anything runs).
        DatasetError: no images in ``task_dir``, or an image that cannot be read (naming it).
        FileNotFoundError: no lung model config or checkpoint.
    """
    from tqdm.auto import tqdm

    task_dir = os.path.abspath(os.fspath(task_dir))
    images = task_images(task_dir)
    path = _output_path(task_dir, output, overwrite)
    network, preprocessing, bundle_threshold = load_lung_model(lung_bundle, ckpt_path, device)
    threshold = bundle_threshold if threshold is None else float(threshold)
    rows, missed = [], 0
    for image in tqdm(images, desc="lung boxes", unit="image", disable=not progress):
        try:
            pixels = load_input_image(os.path.join(task_dir, image))
        except (OSError, ValueError) as e:
            raise DatasetError(f"{os.path.join(task_dir, image)}: unreadable image ({type(e).__name__}: {e}).") from e
        box, found = predict_lung_box(network, preprocessing, pixels, size=size, threshold=threshold)
        missed += not found
        rows.append(_box_row(image, box, int(pixels.shape[-2]), int(pixels.shape[-1]), found))
    write_lung_boxes(rows, path)
    message = f"lung boxes of {len(rows)} images written to {path}"
    if missed:
        logger.warning(f"{message}; no lung found in {missed} (their box is the whole image, lung_found 0).")
    else:
        logger.info(message + ".")
    return path


def lung_boxes_from_masks(
    task_dir: str,
    masks: Mapping[str, Any] | Callable[[str], Any],
    output: str | None = None,
    threshold: float = 0.5,
    overwrite: bool = False,
) -> str:
    """Write ``<task_dir>/lung_boxes.csv`` from given lung masks in the images' own grids (no network).

    Args:
        task_dir: a prepared task folder (:func:`task_images`).
        masks: the lung mask ``(H, W)`` of every image, by its path relative to ``task_dir`` (forward slashes): a
            mapping, or a function of that path.
        output: the CSV file (default ``<task_dir>/lung_boxes.csv``).
        threshold: foreground threshold of the masks.
        overwrite: replace an existing CSV.

    Returns:
        the CSV path.

    Raises:
        LungBoxFileExistsError: the CSV exists and ``overwrite`` is False.
        DatasetError: an image without a mask, or a mask of another size than its image (naming both).
    """
    task_dir = os.path.abspath(os.fspath(task_dir))
    images = task_images(task_dir)
    path = _output_path(task_dir, output, overwrite)
    rows = []
    for image in images:
        if callable(masks):
            mask = masks(image)
        elif image in masks:
            mask = masks[image]
        else:
            raise DatasetError(f"no lung mask given for {os.path.join(task_dir, image)}.")
        mask = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=np.float64)
        mask = mask[0] if mask.ndim == 3 and mask.shape[0] == 1 else mask
        with Image.open(os.path.join(task_dir, image)) as img:
            width, height = img.size
        if mask.shape != (height, width):
            raise DatasetError(
                f"the lung mask of {os.path.join(task_dir, image)} is {mask.shape[0]} x {mask.shape[1]} but the image "
                f"is {height} x {width} (height x width)."
            )
        found = bool((mask >= threshold).any())
        rows.append(_box_row(image, lung_box_from_mask(mask, threshold=threshold), height, width, found))
    return write_lung_boxes(rows, path)
