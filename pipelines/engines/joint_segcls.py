"""Batches and the evaluation iteration of the joint segmentation + classification network
(``bundles/busi_joint_segcls``; :class:`networks.nets.joint_segcls.JointSegClsNet`).

* :class:`JointSegClsPrepareBatch`: ``prepare_batch`` of MONAI's ``SupervisedTrainer``. It returns
  ``(image, {"mask", "label"}, (), {"labels": label})``, so the trainer's own iteration calls
  ``network(image, labels=label)`` (the class indices reach the latent augmentor) and
  ``loss_function(outputs, {"mask", "label"})`` (:class:`~pipelines.losses.JointSegClsLoss`).
* :class:`JointSegClsEvalStep`: ``iteration_update`` of a ``SupervisedEvaluator`` (built with ``decollate=False``):
  eval mode, no gradients, one flat dict of batch tensors that the project's metric handlers read (class
  probabilities, binarised mask, ground truth).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine

from .precision import autocast

__all__ = ["JointSegClsEvalStep", "JointSegClsPrepareBatch", "joint_batch_to_device"]


def _plain(x: Any) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def joint_batch_to_device(batch: Mapping, device: torch.device | str, non_blocking: bool = False) -> dict[str, Any]:
    """``image`` (float), ``mask`` (float ``(B, 1, H, W)``) and ``label`` (long ``(B,)``) of a collated BUSI batch
    on ``device`` as plain tensors (no meta data through the network).

    Raises:
        KeyError: the batch lacks one of the keys (naming the keys it has).
    """
    missing = [k for k in ("image", "mask", "label") if k not in batch]
    if missing:
        raise KeyError(f"the batch lacks {missing} (keys: {sorted(batch)}).")
    return {
        "image": _plain(batch["image"]).to(device, non_blocking=non_blocking).float(),
        "mask": _plain(batch["mask"]).to(device, non_blocking=non_blocking).float(),
        "label": _plain(batch["label"]).to(device).reshape(-1).long(),
    }


class JointSegClsPrepareBatch:
    """``prepare_batch`` of a MONAI ``SupervisedTrainer`` for the joint network: ``(image, {"mask": m, "label": y},
    (), {"labels": y})``.

    MONAI's ``SupervisedTrainer`` then runs ``network(image, labels=y)`` (the latent augmentor mixes features within
    each minority class of the batch) and ``loss_function(outputs, {"mask": m, "label": y})``.
    """

    def __call__(
        self, batchdata: Mapping, device: torch.device | str | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple, dict[str, torch.Tensor]]:
        data = joint_batch_to_device(batchdata, device if device is not None else "cpu", non_blocking)
        return data["image"], {"mask": data["mask"], "label": data["label"]}, (), {"labels": data["label"]}


class JointSegClsEvalStep:
    """``iteration_update`` of a ``SupervisedEvaluator`` (``decollate=False``) for the joint network.

    Returns ``{"image", "label" (B,), "mask" (ground truth, (B, 1, H, W)), "pred" (softmax class probabilities
    (B, K)), "seg_prob" (sigmoid lesion probability (B, 1, H, W)), "seg" (seg_prob >= threshold, float)}``.

    Args:
        threshold: lesion probability threshold of the binarised mask.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}.")
        self.threshold = float(threshold)

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        data = joint_batch_to_device(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        engine.network.eval()
        amp = bool(getattr(engine, "amp", False))
        with torch.no_grad(), autocast(data["image"].device, amp):
            out = engine.network(data["image"])
        seg_prob = torch.sigmoid(out["seg"].float())
        return {
            **data,
            "pred": torch.softmax(out["logits"].float(), dim=1),
            "seg_prob": seg_prob,
            "seg": (seg_prob >= self.threshold).float(),
        }
