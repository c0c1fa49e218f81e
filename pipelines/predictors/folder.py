"""Folder inference of the 2D ultrasound bundles: every PNG / JPEG / DICOM image of a folder -> class
probabilities (CSV) and mask PNGs in the original image grid."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from networks.nets.lanet import split_outputs

from ..bundles.paths import check_output_dir
from ..handlers.checkpoints import load_weights
from ..metrics.localisation import upsample_mask

__all__ = ['IMAGE_EXTENSIONS', 'infer_folder', 'list_input_images', 'load_input_image']


#: File types :func:`infer_folder` reads (DICOM through MONAI's ITK reader).
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


def load_input_image(path: str) -> np.ndarray:
    """One image as float32 ``(1, H, W)`` in [0, 255]: PNG/JPEG via :func:`transforms.busi.load_busi_image`, DICOM
    (one frame, grayscale or RGB) via MONAI's ``LoadImage`` with the ITK reader, rescaled to [0, 255] by its range.
    """
    from transforms.busi import load_busi_image

    if not path.lower().endswith(".dcm"):
        return load_busi_image(path)
    from monai.data.utils import is_no_channel
    from monai.transforms import LoadImage

    data = LoadImage(reader="ITKReader", image_only=True, ensure_channel_first=False)(path)
    img = np.asarray(data, dtype=np.float32)
    # (x, y[, frames]) grayscale or (x, y[, frames], components): only the reader's channel flag tells a 3- or
    # 4-frame grayscale volume from one RGB(A) frame.
    if not is_no_channel(data.meta.get("original_channel_dim", float("nan"))):
        if img.shape[-1] in (3, 4):  # RGB(A)
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        elif img.shape[-1] == 1:
            img = img[..., 0]
        else:
            raise ValueError(f"{path}: unsupported number of components {img.shape[-1]} (shape {tuple(img.shape)}).")
    while img.ndim > 2 and img.shape[-1] == 1:  # one frame: ITK reads a DICOM slice as (x, y, 1)
        img = img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"{path}: expected one 2D frame, got shape {tuple(data.shape)}.")
    img = img.T  # ITK arrays are (x, y); images are (rows, columns)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)
    return img[None].astype(np.float32)


def _preprocess(image: np.ndarray, image_size: int) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """As :func:`transforms.recipes.busi_eval_transforms`: short side -> ``image_size``, centre crop, [-1, 1].
    Returns the network input ``(1, S, S)``, the resized size and the crop start."""
    from monai.transforms import CenterSpatialCrop

    from transforms.busi import ResizeShortSide

    resized = ResizeShortSide(image_size, mode="bilinear", anti_aliasing=True)(torch.as_tensor(image))
    size = (int(resized.shape[1]), int(resized.shape[2]))
    start = tuple(max(s // 2 - image_size // 2, 0) for s in size)
    cropped = CenterSpatialCrop(image_size)(resized)
    x = torch.as_tensor(cropped).float().clamp(0, 255) / 127.5 - 1.0
    return x, size, start  # type: ignore[return-value]


def infer_folder(
    network: nn.Module,
    input_dir: str,
    pred_dir: str,
    class_names: Sequence[str],
    ckpt_path: str | None = None,
    image_size: int = 256,
    device: torch.device | str = "cpu",
    threshold: float = 0.5,
) -> str:
    """Classify and localise every image of ``input_dir``.

    Writes ``<pred_dir>/predictions.csv`` (``file``, ``prob_<class>`` ..., ``prediction``) and
    ``<pred_dir>/<name>_mask.png``: the mask probability map placed back into the centre crop, upsampled
    bilinearly to the original image size, thresholded at ``threshold``, stored as 0/255 8-bit.

    Raises:
        ValueError: ``pred_dir`` is ``input_dir`` or inside it.
    """
    check_output_dir(pred_dir, input_dir)
    device = torch.device(device)
    if ckpt_path is not None:
        load_weights(network, ckpt_path, required=True)
    network.eval()
    os.makedirs(pred_dir, exist_ok=True)
    rows = []
    for path in list_input_images(input_dir):
        image = load_input_image(path)
        x, size, start = _preprocess(image, image_size)
        with torch.no_grad():
            logits, mask = split_outputs(network(x[None].to(device)))
        prob = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
        name = os.path.splitext(os.path.basename(path))[0]
        if mask is not None:
            canvas = torch.zeros((1, 1, *size), device=device)
            crop = upsample_mask(mask, (image_size, image_size))
            canvas[..., start[0] : start[0] + image_size, start[1] : start[1] + image_size] = crop
            full = upsample_mask(canvas, image.shape[1:])[0, 0] >= threshold
            Image.fromarray(full.cpu().numpy().astype(np.uint8) * 255, mode="L").save(
                os.path.join(pred_dir, f"{name}_mask.png")
            )
        rows.append([os.path.basename(path), *(float(v) for v in prob), class_names[int(np.argmax(prob))]])
    with open(os.path.join(pred_dir, "predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", *(f"prob_{c}" for c in class_names), "prediction"])
        writer.writerows(rows)
    return pred_dir
