"""LA-Net iterations for MONAI's engines (``bundles/busi_lanet``).

LA-Net (Fan et al., Medical Image Analysis 90 (2023) 102960) returns ``{"logits": (B, K), "mask": (B, 1, m, m)}``
and its losses need the ground-truth mask and the ``has_mask`` flags, so MONAI's ``SupervisedTrainer`` /
``SupervisedEvaluator`` get the iteration functions of this module (``iteration_update``) instead of the default
``loss(pred, label)`` step. Both engines are built with ``decollate=False``: ``engine.state.output`` is one dict
of batch tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine

from networks.nets.lanet import split_outputs

__all__ = ['LANetEvalStep', 'LANetTrainStep', 'batch_to_device']


def batch_to_device(batch: Mapping, device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
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

    Stage 1: ``loss_function(mask, gt_mask, has_mask)`` (:class:`~pipelines.losses.LANetMaskLoss`).
    Stage 2: ``loss_function(logits, mask, labels, gt_mask, has_mask)``
    (:class:`~pipelines.losses.LANetJointLoss`). Uses the trainer's ``network``, ``optimizer``,
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
        data = batch_to_device(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
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
        data = batch_to_device(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        engine.network.eval()
        amp = bool(getattr(engine, "amp", False))
        with torch.no_grad(), torch.autocast(device_type=data["image"].device.type, enabled=amp):
            logits, mask = split_outputs(engine.network(data["image"]))
        out = dict(data, pred=torch.softmax(logits.float(), dim=1))
        out["mask_prob"] = mask.float() if mask is not None else None
        return out
