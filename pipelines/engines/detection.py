"""Batches, loss and evaluation iteration of the RetinaNet lesion detector (``bundles/busi_detection``) on MONAI's
engines.

The trainer is MONAI's own ``SupervisedTrainer`` with its own iteration (AMP and gradient scaling on CUDA included):
its ``network`` is the detector (:func:`networks.nets.retinanet.build_detector`), :class:`DetectionPrepareBatch`
turns a batch into ``(images, targets, (targets,), {})`` so that the trainer's inferer calls
``detector(images, targets)``, which in train mode returns MONAI's loss terms ``{"classification",
"box_regression"}``, and :class:`DetectionLoss` (the trainer's ``loss_function``) weighs them into one loss. The
trainer output keeps the terms under ``"pred"``; :func:`detection_loss_terms` reads them for the console and
TensorBoard.

The evaluator is MONAI's ``SupervisedEvaluator`` with :class:`DetectionEvalStep` as ``iteration_update`` (built with
``decollate=False``); its output per batch, with one entry per image in every list:

``{"image": (B, C, H, W), "pred_box": [(N_i, 4)], "pred_score": [(N_i,)], "pred_label": [(N_i,)], "box": [(M_i, 4)],
"label": [(M_i,)], "case_id": [str]}``

with boxes on the network grid in MONAI's standard ``xyxy`` mode in array index order (``[row_min, col_min,
row_max, col_max]``, see :mod:`transforms.busi`), which the detection metric handlers read
(:mod:`pipelines.metrics.detection`).

Fine-tuning (the seed's BUSI -> clinic step): :func:`load_init_weights` starts a training from the weights of another
run (its run folder or a checkpoint file), with a fresh optimizer.

Batches: the recipes resize every image to one size, but the number of boxes varies, so the data loaders collate
with :func:`detection_collate` (images stacked, every other key a list with one entry per image).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine

from .precision import autocast

__all__ = [
    "DetectionEvalStep",
    "DetectionLoss",
    "DetectionPrepareBatch",
    "detection_batch_to_device",
    "detection_collate",
    "detection_loss_terms",
    "load_init_weights",
]

logger = logging.getLogger(__name__)

_LOSS_KEYS = ("classification", "box_regression")


def _plain(x: Any) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def detection_collate(items: Sequence[Mapping]) -> dict[str, Any]:
    """Collate detection items of one image size: ``image`` stacked into ``(B, C, H, W)``, every other key (``box``
    ``(N_i, 4)``, ``label`` ``(N_i,)``, ``case_id``, meta data, ...) a list with one entry per item (None where an
    item lacks it).

    Raises:
        ValueError: an empty batch, or images of different shapes (naming them).
    """
    items = list(items)
    if not items:
        raise ValueError("cannot collate an empty batch.")
    shapes = {tuple(torch.as_tensor(item["image"]).shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"detection batches need images of one size (resize them in the transforms), got {shapes}.")
    keys = list(dict.fromkeys(k for item in items for k in item))
    batch: dict[str, Any] = {k: [item.get(k) for item in items] for k in keys if k != "image"}
    batch["image"] = torch.stack([_plain(item["image"]) for item in items])
    return batch


def detection_batch_to_device(
    batch: Mapping, device: torch.device | str, non_blocking: bool = False
) -> dict[str, Any]:
    """``image`` (float ``(B, C, H, W)``), ``box`` (list of float ``(N_i, 4)``) and ``label`` (list of long
    ``(N_i,)``) of a :func:`detection_collate` batch on ``device`` as plain tensors, and its ``case_id`` list
    (``str(i)`` when the batch has none).

    Raises:
        KeyError: the batch lacks ``image``, ``box`` or ``label`` (naming the keys it has).
        ValueError: a box count differs from its label count.
    """
    missing = [k for k in ("image", "box", "label") if k not in batch]
    if missing:
        raise KeyError(f"the batch lacks {missing} (keys: {sorted(batch)}).")
    images = _plain(batch["image"]).to(device, non_blocking=non_blocking).float()
    boxes = [_plain(b).to(device).float().reshape(-1, 4) for b in batch["box"]]
    labels = [_plain(lab).to(device).long().reshape(-1) for lab in batch["label"]]
    case_ids = batch.get("case_id") or [str(i) for i in range(len(boxes))]
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        if b.shape[0] != lab.shape[0]:
            raise ValueError(f"item {case_ids[i]!r} has {b.shape[0]} boxes but {lab.shape[0]} labels.")
    return {"image": images, "box": boxes, "label": labels, "case_id": [str(c) for c in case_ids]}


class DetectionPrepareBatch:
    """``prepare_batch`` of MONAI's ``SupervisedTrainer`` for a detector: ``(images, targets, (targets,), {})``,
    ``targets`` one ``{box_key: (N_i, 4), label_key: (N_i,)}`` per image, so the trainer's inferer runs
    ``detector(images, targets)`` and its loss function gets ``(loss terms, targets)``.

    Args:
        box_key, label_key: the detector's target keys (:func:`~networks.nets.retinanet.build_detector`).
    """

    def __init__(self, box_key: str = "box", label_key: str = "label") -> None:
        self.box_key, self.label_key = box_key, label_key

    def __call__(
        self, batchdata: Mapping, device: torch.device | str | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], tuple, dict]:
        data = detection_batch_to_device(batchdata, device if device is not None else "cpu", non_blocking)
        targets = [{self.box_key: b, self.label_key: lab} for b, lab in zip(data["box"], data["label"])]
        return data["image"], targets, (targets,), {}


class DetectionLoss:
    """``loss_function`` of the detection trainer: ``cls_weight * classification + box_weight * box_regression`` of
    the loss terms the detector returns in train mode (MONAI's ``RetinaNetDetector``: BCE on the sampled anchors,
    smooth L1 on the matched ones).

    Args:
        cls_weight: weight of the classification term.
        box_weight: weight of the box-regression term.
    """

    def __init__(self, cls_weight: float = 1.0, box_weight: float = 1.0) -> None:
        if float(cls_weight) < 0 or float(box_weight) < 0 or float(cls_weight) + float(box_weight) == 0:
            raise ValueError(f"loss weights must be >= 0, not both 0, got {cls_weight!r} and {box_weight!r}.")
        self.weights = {"classification": float(cls_weight), "box_regression": float(box_weight)}

    def __call__(self, losses: Mapping[str, torch.Tensor], targets: Any = None) -> torch.Tensor:
        missing = [k for k in _LOSS_KEYS if k not in losses]
        if missing:
            raise KeyError(f"the detector's loss terms lack {missing} (got {sorted(losses)}); is it in train mode?")
        ref = losses["classification"]
        return sum(w * torch.as_tensor(losses[k], device=ref.device, dtype=ref.dtype) for k, w in self.weights.items())


def detection_loss_terms(output: Mapping) -> dict[str, float]:
    """``{"loss", "loss_classification", "loss_box_regression"}`` of a detection trainer's output, for the console
    and TensorBoard (``output_transform`` of MONAI's ``StatsHandler`` / ``TensorBoardStatsHandler``, which write
    every entry of a dict)."""
    def value(x: Any) -> float:
        return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)

    terms = {"loss": value(output["loss"])}
    pred = output.get("pred")
    if isinstance(pred, Mapping):
        terms.update({f"loss_{k}": value(pred[k]) for k in _LOSS_KEYS if k in pred})
    return terms


class DetectionEvalStep:
    """``iteration_update`` of a ``SupervisedEvaluator`` (``decollate=False``) whose ``network`` is a detector: eval
    mode, no gradients (autocast when the evaluator's ``amp`` is on); output as in the module docstring.

    Args:
        box_key, label_key: the detector's output keys (scores under ``label_key + "_scores"``).
    """

    def __init__(self, box_key: str = "box", label_key: str = "label") -> None:
        self.box_key, self.label_key = box_key, label_key

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        data = detection_batch_to_device(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        engine.network.eval()
        amp = bool(getattr(engine, "amp", False))
        with torch.no_grad(), autocast(data["image"].device, amp):
            detections = engine.network(data["image"])
        score_key = f"{self.label_key}_scores"
        return {
            "image": data["image"],
            "pred_box": [d[self.box_key].float() for d in detections],
            "pred_score": [d[score_key].float() for d in detections],
            "pred_label": [d[self.label_key].long() for d in detections],
            "box": data["box"],
            "label": data["label"],
            "case_id": data["case_id"],
        }


def load_init_weights(network: nn.Module, init_from: str | None) -> str | None:
    """Start a training from another run's weights (weights only: the optimizer, schedule and epoch start afresh).

    Args:
        network: the network to fill (not the detector around it).
        init_from: a checkpoint file (``model.pt`` or an interval checkpoint ``checkpoint_epoch=N.pt``; anything
            :func:`pipelines.handlers.checkpoints.load_weights` reads) or a run folder (its best model
            ``models/model.pt``); None, ``""`` or ``"null"`` loads nothing.

    Returns:
        the file loaded, or None.

    Raises:
        FileNotFoundError: ``init_from`` is neither a file nor a run folder with ``models/model.pt``.
        RuntimeError: the weights do not fit the network (naming the file; e.g. another ``depth`` or ``image``
            channels).
    """
    from pipelines.handlers.checkpoints import load_weights

    if init_from is None or str(init_from).strip().lower() in ("", "none", "null"):
        return None
    path = os.fspath(init_from)
    if os.path.isdir(path):
        path = os.path.join(path, "models", "model.pt")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"init_from {init_from!r}: no checkpoint file and no run folder with models/model.pt (train the first "
            "stage, or pass its model.pt)."
        )
    try:
        load_weights(network, path, strict=True, required=True)
    except RuntimeError as e:
        raise RuntimeError(f"init_from {path!r} does not fit the network (train it with the same network_def): "
                           f"{e}") from e
    logger.info(f"training starts from the weights of {os.path.abspath(path)} (fresh optimizer).")
    return path
