"""LA-Net iterations for MONAI's engines (``bundles/busi_lanet``).

LA-Net (Fan et al., Medical Image Analysis 90 (2023) 102960) returns ``{"logits": (B, K), "mask": (B, 1, m, m)}``
and its losses need the ground-truth mask and the ``has_mask`` flags, so MONAI's ``SupervisedTrainer`` /
``SupervisedEvaluator`` get the iteration functions of this module (``iteration_update``) instead of the default
``loss(pred, label)`` step. Both engines are built with ``decollate=False``: ``engine.state.output`` is one dict
of batch tensors. :func:`load_stage1_weights` starts stage 2 from stage 1's model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from ignite.engine import Engine

from networks.nets.lanet import split_outputs

from .precision import autocast, float32_outputs

__all__ = ['LANetEvalStep', 'LANetTrainStep', 'backward_step', 'batch_to_device', 'check_stage', 'load_stage1_weights']

logger = logging.getLogger(__name__)

_STAGE1_COMMAND = (
    "python -m monai.bundle run training --config_file "
    "\"['bundles/busi_lanet/configs/train.yaml','bundles/busi_lanet/configs/stage1.yaml']\""
)


def check_stage(stage: int, loss_function: Any) -> int:
    """Fail clearly when ``stage`` and the loss disagree: ``train.yaml`` is stage 2; stage 1 is its overlay
    ``stage1.yaml`` (which sets ``stage: 1`` and the mask loss), not a ``--stage 1`` override.

    Returns:
        ``stage``.

    Raises:
        ValueError: ``stage`` is not 1 or 2, or does not match the loss (mask loss in stage 1, joint loss in 2).
    """
    if int(stage) not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}.")
    is_mask_loss = type(loss_function).__name__ == "LANetMaskLoss"
    if (int(stage) == 1) != is_mask_loss:
        raise ValueError(
            f"stage {stage} with the loss {type(loss_function).__name__}: train.yaml is stage 2 and stage 1 is the "
            f"overlay stage1.yaml ({_STAGE1_COMMAND}); --stage alone no longer switches the stage."
        )
    return int(stage)


def load_stage1_weights(network: nn.Module, path: str | None, resume_path: str | None = None) -> bool:
    """Start LA-Net stage 2 from stage 1's model, saying in the log what was loaded.

    Args:
        network: the stage-2 network.
        path: stage 1's best model (a ``CheckpointSaver`` ``model.pt``); None trains from the backbone
            initialisation (``--lanet_weights null``).
        resume_path: the stage's own last checkpoint when it resumes (its model replaces these weights, so
            nothing is loaded).

    Returns:
        whether stage 1's weights were loaded.

    Raises:
        FileNotFoundError: ``path`` is set but missing (with the command that writes it and the opt-out).
    """
    if resume_path:
        logger.info(f"stage 2 resumes from {resume_path}; stage 1's weights ({path}) are not loaded.")
        return False
    if path is None or str(path).lower() in ("", "none", "null"):
        logger.info("stage 2 trains LA-Net from the backbone initialisation (lanet_weights is null).")
        return False
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"stage 1's weights {path} do not exist (lanet_weights). Run stage 1 first ({_STAGE1_COMMAND} with the "
            "same --output_dir), point --lanet_weights to a stage-1 model.pt, or pass --lanet_weights null to train "
            "stage 2 from scratch."
        )
    device = next(network.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    network.load_state_dict(state, strict=True)
    logger.info(f"stage 2 starts from stage 1's weights: loaded {os.path.abspath(path)}.")
    return True


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


def backward_step(engine: Engine, loss: torch.Tensor, amp: bool) -> None:
    """Backward of ``loss`` and one step of ``engine.optimizer``, through ``engine.scaler`` (a ``GradScaler``) when
    ``amp`` is on and the trainer has one."""
    scaler = getattr(engine, "scaler", None)
    if amp and scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(engine.optimizer)
        scaler.update()
    else:
        loss.backward()
        engine.optimizer.step()


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
        with autocast(data["image"].device, amp):
            logits, mask = float32_outputs(split_outputs(engine.network(data["image"])))
        if mask is None:
            raise ValueError("LANetTrainStep needs a network that predicts a mask (LA-Net).")
        if self.stage == 1:
            loss = engine.loss_function(mask, data["mask"], data["has_mask"])
        else:
            loss = engine.loss_function(logits, mask, data["label"], data["mask"], data["has_mask"])
        backward_step(engine, loss, amp)
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
        with torch.no_grad(), autocast(data["image"].device, amp):
            logits, mask = split_outputs(engine.network(data["image"]))
        out = dict(data, pred=torch.softmax(logits.float(), dim=1))
        out["mask_prob"] = mask.float() if mask is not None else None
        return out
