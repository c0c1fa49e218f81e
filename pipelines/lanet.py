"""LA-Net bundle pieces (``bundles/busi_lanet``): training/validation iterations for the dict output, the
mask Dice metric, a TensorBoard picture handler, evaluation with PGD robustness and figures, folder inference.

LA-Net (Fan et al., Medical Image Analysis 90 (2023) 102960) returns ``{"logits": (B, K), "mask": (B, 1, m, m)}``
and its losses need the ground-truth mask and the ``has_mask`` flags, so MONAI's ``SupervisedTrainer`` /
``SupervisedEvaluator`` get the iteration functions of this module (``iteration_update``) instead of the default
``loss(pred, label)`` step. Both engines are built with ``decollate=False``: ``engine.state.output`` is one dict
of batch tensors.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from PIL import Image

from networks.nets.lanet import split_outputs

__all__ = [
    "IMAGE_EXTENSIONS",
    "LANetEvalStep",
    "LANetTensorBoardHandler",
    "LANetTrainStep",
    "MaskDiceMetric",
    "evaluate_lanet",
    "infer_folder",
    "list_input_images",
    "load_input_image",
    "load_weights",
    "mask_dice_iou",
    "upsample_mask",
]

#: File types :func:`infer_folder` reads (DICOM through MONAI's ITK reader).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm")
_MASK_FILE = re.compile(r"_mask(?:_\d+)?\.png$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------
def load_weights(network: nn.Module, path: str | None, strict: bool = True, required: bool = False) -> bool:
    """Load a model state into ``network`` from a bundle checkpoint.

    Accepts the ``model.pt`` a ``CheckpointSaver`` writes for the best metric (a bare state dict), an interval
    checkpoint ``{"model": state, "optimizer": ...}`` or a plain state dict.

    Args:
        network: the network to fill.
        path: checkpoint file; None or a missing file loads nothing (unless ``required``).
        strict: see :meth:`torch.nn.Module.load_state_dict`.
        required: raise when ``path`` is missing.

    Returns:
        whether weights were loaded.

    Raises:
        FileNotFoundError: ``required`` and the file does not exist.
    """
    if not path or not os.path.isfile(path):
        if required:
            raise FileNotFoundError(f"checkpoint {path} does not exist; train first or pass --ckpt_path.")
        return False
    device = next(network.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    network.load_state_dict(state, strict=strict)
    return True


# --------------------------------------------------------------------------------------------
# iterations
# --------------------------------------------------------------------------------------------
def _batch_to(batch: Mapping, device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
    """Images, masks, flags and labels of a collated BUSI batch on ``device``."""
    out = {
        "image": torch.as_tensor(batch["image"]).to(device, non_blocking=non_blocking).float(),
        "mask": torch.as_tensor(batch["mask"]).to(device, non_blocking=non_blocking).float(),
        "has_mask": torch.as_tensor(batch["has_mask"]).to(device).reshape(-1),
        "label": torch.as_tensor(batch["label"]).to(device).reshape(-1).long(),
    }
    for k in ("image", "mask"):  # plain tensors: no meta data through the network
        out[k] = out[k].as_tensor() if hasattr(out[k], "as_tensor") else out[k]
    return out


class LANetTrainStep:
    """``iteration_update`` of a ``SupervisedTrainer`` for LA-Net (or any network :func:`split_outputs` reads).

    Stage 1: ``loss_function(mask, gt_mask, has_mask)`` (:class:`~pipelines.losses_lanet.LANetMaskLoss`).
    Stage 2: ``loss_function(logits, mask, labels, gt_mask, has_mask)``
    (:class:`~pipelines.losses_lanet.LANetJointLoss`). Uses the trainer's ``network``, ``optimizer``,
    ``loss_function``, ``amp`` and ``scaler``.

    Returns ``{"loss", "pred" (softmax probabilities, detached), "label", "mask_prob", "mask", "has_mask"}``.

    Args:
        stage: 1 (mask loss only) or 2 (joint loss).
    """

    def __init__(self, stage: int = 2) -> None:
        if int(stage) not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}.")
        self.stage = int(stage)

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        data = _batch_to(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        amp = bool(getattr(engine, "amp", False))
        with torch.autocast(device_type=data["image"].device.type, enabled=amp):
            logits, mask = split_outputs(engine.network(data["image"]))
        if mask is None:
            raise ValueError("LANetTrainStep needs a network that predicts a mask (LA-Net).")
        if self.stage == 1:
            loss = engine.loss_function(mask, data["mask"], data["has_mask"])
        else:
            loss = engine.loss_function(logits, mask, data["label"], data["mask"], data["has_mask"])
        scaler = getattr(engine, "scaler", None)
        if amp and scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(engine.optimizer)
            scaler.update()
        else:
            loss.backward()
            engine.optimizer.step()
        return {
            "loss": loss.detach(),
            "pred": torch.softmax(logits.detach().float(), dim=1),
            "label": data["label"],
            "mask_prob": mask.detach().float(),
            "mask": data["mask"],
            "has_mask": data["has_mask"],
        }


class LANetEvalStep:
    """``iteration_update`` of a ``SupervisedEvaluator`` for LA-Net: eval mode, no gradients.

    Returns ``{"image", "pred" (softmax probabilities), "label", "mask_prob" (B, 1, m, m), "mask" (GT), "has_mask"}``.
    """

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        data = _batch_to(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        engine.network.eval()
        amp = bool(getattr(engine, "amp", False))
        with torch.no_grad(), torch.autocast(device_type=data["image"].device.type, enabled=amp):
            logits, mask = split_outputs(engine.network(data["image"]))
        out = dict(data, pred=torch.softmax(logits.float(), dim=1))
        out["mask_prob"] = mask.float() if mask is not None else None
        return out


# --------------------------------------------------------------------------------------------
# localisation metric
# --------------------------------------------------------------------------------------------
def upsample_mask(mask_prob: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """LA-Net mask probabilities ``(B, 1, m, m)`` -> ``(B, 1, *size)``, bilinear (as the paper evaluates)."""
    return F.interpolate(mask_prob.float(), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)


def mask_dice_iou(mask_prob: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of the upsampled mask thresholded at ``threshold`` against ``gt`` ``(B, 1, H, W)``.

    Images whose prediction and ground truth are both empty score 1.
    """
    pred = upsample_mask(mask_prob, gt.shape[2:]) >= threshold
    truth = gt > 0.5
    inter = (pred & truth).flatten(1).sum(1).double()
    p, t = pred.flatten(1).sum(1).double(), truth.flatten(1).sum(1).double()
    union = p + t - inter
    empty = (p + t) == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (p + t).clamp_min(1))
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    return dice.cpu().numpy(), iou.cpu().numpy()


class MaskDiceMetric(Metric):
    """Mean Dice (or IoU) of the LA-Net mask, upsampled to the image size and thresholded, over the images
    that have a ground-truth mask (``has_mask = 1``); reads ``mask_prob``, ``mask``, ``has_mask`` of the output.

    Args:
        kind: ``"dice"`` or ``"iou"``.
        threshold: probability threshold.
    """

    required_output_keys = ("mask_prob", "mask", "has_mask")
    _skip_unrolling = True

    def __init__(self, kind: str = "dice", threshold: float = 0.5, output_transform=lambda x: x, device="cpu"):
        if kind not in ("dice", "iou"):
            raise ValueError(f"kind must be 'dice' or 'iou', got {kind!r}.")
        self.kind, self.threshold = kind, threshold
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._values: list[float] = []

    def update(self, output: Sequence) -> None:
        """``output``: ``(mask_prob (B, 1, m, m), gt mask (B, 1, H, W), has_mask (B,))``."""
        mask_prob, gt, has_mask = output
        if mask_prob is None:
            return
        flags = torch.as_tensor(has_mask).reshape(-1).bool().cpu()
        if not bool(flags.any()):
            return
        dice, iou = mask_dice_iou(mask_prob, gt, self.threshold)
        values = dice if self.kind == "dice" else iou
        self._values.extend(float(v) for v in values[flags.numpy()])

    def compute(self) -> float:
        return float(np.mean(self._values)) if self._values else float("nan")


# --------------------------------------------------------------------------------------------
# TensorBoard picture
# --------------------------------------------------------------------------------------------
def _gray_rgb(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.repeat(x[None], 3, axis=0)


def _heat_rgb(x: np.ndarray) -> np.ndarray:
    """A blue -> red colour map of values in [0, 1] (no matplotlib needed)."""
    x = np.clip(x, 0, 1)
    return np.stack([x, 1 - np.abs(2 * x - 1), 1 - x])


class LANetTensorBoardHandler:
    """Each validation run, one TensorBoard picture per row of the first ``num_images`` images of the first batch:
    input, ground-truth mask, predicted mask (upsampled bilinearly to the image) and Grad-CAM on ``target_layer``.

    Attach to the evaluator; the step is ``engine.state.epoch`` (the trainer's epoch under ``ValidationHandler``).

    Args:
        log_dir: TensorBoard folder.
        num_images: rows of the grid.
        target_layer: Grad-CAM layer (see :func:`pipelines.saliency.grad_cam`); None skips Grad-CAM.
        tag: image tag.
    """

    def __init__(self, log_dir: str = "./runs", num_images: int = 4, target_layer: str | None = "backbone.layer4",
                 tag: str = "val_lanet") -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=log_dir)
        self.num_images, self.target_layer, self.tag = int(num_images), target_layer, tag
        self._done = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._done = False

    def make_picture(self, network: nn.Module, output: Mapping) -> np.ndarray:
        """Float RGB picture in [0, 1], ``(3, n * H, k * W)`` for ``n = min(num_images, batch)`` rows of ``H x W``
        images and ``k`` panels: input, ground-truth mask, predicted mask (black when ``output`` has no
        ``mask_prob``) and, unless ``target_layer`` is None, Grad-CAM over the input."""
        from pipelines.saliency import grad_cam

        n = min(self.num_images, output["image"].shape[0])
        images = output["image"][:n]
        size = images.shape[2:]
        pred = upsample_mask(output["mask_prob"][:n], size) if output.get("mask_prob") is not None else None
        cam = grad_cam(network, images, target_layer=self.target_layer) if self.target_layer else None
        rows = []
        for i in range(n):
            img = images[i, 0].detach().cpu().float().numpy()
            tiles = [_gray_rgb(img), _heat_rgb(output["mask"][i, 0].detach().cpu().float().numpy())]
            tiles.append(_heat_rgb(pred[i, 0].cpu().numpy()) if pred is not None else np.zeros_like(tiles[0]))
            if cam is not None:
                tiles.append(0.5 * _gray_rgb(img) + 0.5 * _heat_rgb(cam[i, 0].cpu().numpy()))
            rows.append(np.concatenate(tiles, axis=2))
        return np.concatenate(rows, axis=1).astype(np.float32)

    def __call__(self, engine: Engine) -> None:
        if self._done:
            return
        picture = self.make_picture(engine.network, engine.state.output)
        self._writer.add_image(self.tag, picture, global_step=engine.state.epoch)
        self._writer.flush()
        self._done = True


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "image"


def _markdown(report: Mapping, robust: Mapping, localisation: Mapping) -> str:
    from pipelines.reports import classification_markdown_table

    lines = ["## Classification", "", classification_markdown_table(report), "", "## Localisation", "",
             "| Metric | Value | n |", "|---|---|---|"]
    for key in ("iou", "dice"):
        lines.append(f"| {key} | {localisation[key]:.3f} | {localisation['n']} |")
    lines += ["", f"## PGD robustness (eps {robust['eps']:.4f}, step {robust['step']:.4f}, {robust['steps']} steps)",
              "", "| Metric | clean | PGD |", "|---|---|---|"]
    for key in ("accuracy", "auc"):
        lines.append(f"| {key} | {robust['clean'][key]:.3f} | {robust['pgd'][key]:.3f} |")
    return "\n".join(lines) + "\n"


def evaluate_lanet(
    network: nn.Module,
    dataloader,
    out_dir: str,
    class_names: Sequence[str],
    ckpt_path: str | None = None,
    device: torch.device | str = "cpu",
    pgd_eps: float = 8 / 255,
    pgd_step: float = 2 / 255,
    pgd_steps: int = 4,
    pgd_random_start: bool = True,
    figures: bool = True,
    target_layer: str = "backbone.layer4",
    n_resamples: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
    log_dir: str | None = None,
) -> dict[str, Any]:
    """Evaluate a trained LA-Net (or classifier) on a BUSI test set.

    Writes to ``out_dir``: ``predictions.csv``, ``summary.json`` and ``summary.md`` of
    :func:`~pipelines.reports.write_classification_report` (accuracy, AUC, sensitivity, specificity, F1, ... with
    bootstrap CIs; ``summary.json`` also gets ``localisation`` and ``robustness``, ``summary.md`` the tables below),
    ``localisation.csv`` (per image with a mask: IoU and Dice of the mask upsampled bilinearly to the image and
    thresholded at ``threshold``), ``robustness.json`` (accuracy and AUC clean and under PGD in the [0, 1] image
    space: ``x01 = (x + 1) / 2``, the network sees ``x01 * 2 - 1``) and ``figures/<case>.png``
    (:func:`~pipelines.saliency.save_lanet_figure`).

    Args:
        network: the network (on ``device``).
        dataloader: batches of :func:`transforms.busi.busi_eval_transforms` items.
        out_dir: output folder (created).
        class_names: indexed by label.
        ckpt_path: weights to load first (None: use the network as it is).
        device: where to run.
        pgd_eps, pgd_step, pgd_steps, pgd_random_start: the attack (see :func:`pipelines.robustness.pgd_attack`).
        figures: write one figure per image.
        target_layer: Grad-CAM layer.
        n_resamples, seed, threshold: bootstrap resamples, seed and decision threshold of the report.
        log_dir: optional TensorBoard folder for the Markdown summary.

    Returns:
        ``{"report", "localisation", "robustness", "markdown"}``.
    """
    from pipelines.metrics import classification_report
    from pipelines.reports import _json_safe, write_classification_report
    from pipelines.robustness import pgd_attack, to_minus_one_one
    from pipelines.saliency import grad_cam, save_lanet_figure

    device = torch.device(device)
    if ckpt_path is not None:
        load_weights(network, ckpt_path, required=True)
    network.eval()
    os.makedirs(out_dir, exist_ok=True)
    y_true, probs, adv_probs, case_ids, loc_rows = [], [], [], [], []
    batch_index = 0
    for batch in dataloader:
        data = _batch_to(batch, device)
        ids = [str(c) for c in batch.get("case_id", [f"case_{len(case_ids) + i:04d}" for i in range(len(data["label"]))])]
        with torch.no_grad():
            logits, mask = split_outputs(network(data["image"]))
        p = torch.softmax(logits.float(), dim=1)
        x01 = ((data["image"] + 1.0) / 2.0).clamp(0, 1)
        adv = pgd_attack(network, x01, data["label"], eps=pgd_eps, step=pgd_step, steps=pgd_steps,
                         random_start=pgd_random_start, normalize=to_minus_one_one, seed=seed + batch_index)
        with torch.no_grad():
            adv_logits, _ = split_outputs(network(to_minus_one_one(adv)))
        y_true.append(data["label"].cpu())
        probs.append(p.cpu())
        adv_probs.append(torch.softmax(adv_logits.float(), dim=1).cpu())
        case_ids += ids
        if mask is not None:
            dice, iou = mask_dice_iou(mask, data["mask"], threshold)
            for i, flag in enumerate(data["has_mask"].cpu().tolist()):
                if flag:
                    loc_rows.append({"case_id": ids[i], "iou": float(iou[i]), "dice": float(dice[i])})
        if figures:
            cam = grad_cam(network, data["image"], target_layer=target_layer) if target_layer else None
            for i, cid in enumerate(ids):
                gt = data["mask"][i, 0] if int(data["has_mask"][i]) else None
                save_lanet_figure(
                    os.path.join(out_dir, "figures", f"{_safe_name(cid)}.png"), data["image"][i, 0], gt,
                    None if mask is None else mask[i, 0], None if cam is None else cam[i, 0], class_names, p[i],
                    true_label=int(data["label"][i]),
                )
        batch_index += 1
    y_true_np = torch.cat(y_true).numpy()
    probs_np, adv_np = torch.cat(probs).double().numpy(), torch.cat(adv_probs).double().numpy()

    writer = None
    if log_dir:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=log_dir)
    report = write_classification_report(y_true_np, probs_np, out_dir, class_names, case_ids=case_ids,
                                         n_resamples=n_resamples, seed=seed, threshold=threshold)
    adv_report = classification_report(y_true_np, adv_np, class_names, n_resamples=0, threshold=threshold)
    robust = {
        "eps": float(pgd_eps), "step": float(pgd_step), "steps": int(pgd_steps), "random_start": bool(pgd_random_start),
        "space": "[0, 1] image before normalisation to [-1, 1]",
        "n": int(len(y_true_np)),
        "clean": {k: float(report["metrics"][k]["value"]) for k in ("accuracy", "auc")},
        "pgd": {k: float(adv_report["metrics"][k]["value"]) for k in ("accuracy", "auc")},
    }
    localisation = {
        "n": len(loc_rows), "threshold": threshold,
        "iou": float(np.mean([r["iou"] for r in loc_rows])) if loc_rows else float("nan"),
        "dice": float(np.mean([r["dice"] for r in loc_rows])) if loc_rows else float("nan"),
    }
    with open(os.path.join(out_dir, "robustness.json"), "w") as f:
        json.dump(_json_safe(robust), f, indent=2)
    with open(os.path.join(out_dir, "localisation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case_id", "iou", "dice"])
        w.writeheader()
        w.writerows(loc_rows)
    summary = dict(report, localisation=localisation, robustness=robust)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(_json_safe(summary), f, indent=2)
    markdown = _markdown(report, robust, localisation)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(markdown)
    if writer is not None:
        writer.add_text("evaluation", markdown, 0)
        writer.close()
    print(markdown)
    return {"report": report, "localisation": localisation, "robustness": robust, "markdown": markdown}


# --------------------------------------------------------------------------------------------
# inference on a folder
# --------------------------------------------------------------------------------------------
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
    """As :func:`transforms.busi.busi_eval_transforms`: short side -> ``image_size``, centre crop, [-1, 1].
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
    from pipelines.bundles import check_output_dir

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
