"""Iterations of MONAI's engines for classification with the Grad-CAM attention loss (``cxr_attention_classification``).

Wu, Japkowicz, Gilbert, Corizzo, Data Mining and Knowledge Discovery 40(4):47, 2026: ``loss = lambda * CE +
(1 - lambda) * L_att`` with ``L_att`` the share of the class region (from the lung box) that the Grad-CAM of the
target class leaves below a threshold (:mod:`pipelines.losses.cam_attention`).

* :class:`CAMAttentionTrainStep`: ``iteration_update`` of a ``SupervisedTrainer``. One forward pass gives the
  Grad-CAM layer (captured by a forward hook on the network's ``cam_layer``, so a ``DistributedDataParallel``
  wrapper still runs its own ``forward``) and the logits; the Grad-CAM backward goes through the head only.
* :class:`CAMAttentionEvalStep`: ``iteration_update`` of a ``SupervisedEvaluator``: probabilities, the normalised
  Grad-CAM at image size (gradients enabled locally, no ``create_graph``), the validation CE and ``L_att``.

Batches (collated dicts, engines built with ``decollate=False``): ``image`` ``(B, C, H, W)``, ``label`` ``(B,)`` int
class indices (class 0 = No Finding), ``region`` ``(B, 1, H, W)`` float class-region masks (empty for No Finding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from ignite.engine import Engine

from ..losses.cam_attention import GradCAMAttentionLoss, attention_lambda, grad_cam_maps
from .lanet import backward_step
from .precision import autocast

__all__ = ["CAMAttentionEvalStep", "CAMAttentionTrainStep", "cam_batch_to_device", "cam_features_and_logits"]


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else x


def cam_batch_to_device(batch: Mapping, device: torch.device, non_blocking: bool = False) -> dict[str, Any]:
    """``image`` (float), ``label`` (long, ``(B,)``) and ``region`` (float ``(B, 1, H, W)``) of a collated batch on
    ``device`` as plain tensors; ``label`` / ``region`` are None when the batch has none."""
    if "image" not in batch:
        raise ValueError(f"the batch has no 'image' key (keys: {sorted(batch)}).")
    image = _plain(torch.as_tensor(batch["image"]))
    out: dict[str, Any] = {"image": image.to(device, non_blocking=non_blocking).float()}
    label = batch.get("label")
    out["label"] = None if label is None else _plain(torch.as_tensor(label)).to(device).reshape(-1).long()
    region = batch.get("region")
    if region is not None:
        region = _plain(torch.as_tensor(region)).to(device, non_blocking=non_blocking).float()
    out["region"] = region
    return out


def _unwrap(network: nn.Module) -> nn.Module:
    while isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    return getattr(network, "_orig_mod", network)


def cam_features_and_logits(
    network: nn.Module, images: torch.Tensor, cam_layer: str | None = None, detach_features: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass of ``network`` (through its wrapper's ``forward``, e.g. DDP) returning the output of its
    Grad-CAM layer and the logits.

    Args:
        network: a classifier returning logits (or ``{"logits": ...}``), possibly wrapped in (Distributed)DataParallel.
        images: ``(B, C, *spatial)``.
        cam_layer: dotted name of the Grad-CAM layer; default the network's ``cam_layer`` attribute
            (:class:`~networks.nets.cam_classifier.CAMClassifier`: ``"backbone"``).
        detach_features: evaluation: the backbone runs without a graph (``torch.no_grad``), its output becomes a
            leaf that requires grad and the head runs with gradients enabled, so the Grad-CAM works (through the
            head only) and no backbone activations are kept.

    Returns:
        ``(features (B, C', *spatial'), logits (B, num_classes))``.

    Raises:
        ValueError: no Grad-CAM layer is known, or it was not called exactly once.
    """
    module = _unwrap(network)
    name = cam_layer if cam_layer is not None else getattr(module, "cam_layer", None)
    if not name:
        raise ValueError(
            f"{type(module).__name__} has no 'cam_layer' attribute: pass cam_layer (the dotted name of its last "
            "feature stage) or use networks.nets.CAMClassifier."
        )
    try:
        layer = module.get_submodule(name)
    except AttributeError as e:
        raise ValueError(f"cam_layer {name!r} is not a submodule of {type(module).__name__}: {e}") from e
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if detach_features:
            torch.set_grad_enabled(True)  # for the head only: the surrounding no_grad restores the mode on exit
            output = output.detach().requires_grad_(True)
        captured.append(output)
        return output if detach_features else None

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad() if detach_features else contextlib.nullcontext():
            logits = network(images)
    finally:
        handle.remove()
    if isinstance(logits, Mapping):
        logits = logits["logits"]
    if len(captured) != 1:
        raise ValueError(f"cam_layer {name!r} ran {len(captured)} times in one forward pass; expected once.")
    return captured[0], logits


def _lambda_value(loss_lambda: str | float, epoch: int, slope: float, minimum: float) -> float:
    return attention_lambda(epoch, loss_lambda, slope=slope, minimum=minimum)


class CAMAttentionTrainStep:
    """``iteration_update`` of a ``SupervisedTrainer``: ``loss = lambda * CE + (1 - lambda) * L_att``.

    Uses the trainer's ``network``, ``optimizer``, ``loss_function`` (the CE term, e.g. ``torch.nn.CrossEntropyLoss``;
    ``None`` = plain cross-entropy), ``amp`` and ``scaler``. ``lambda`` comes from :func:`attention_lambda` at the
    0-based epoch ``engine.state.epoch - 1``; when it is 1 (CE only, the baseline) the Grad-CAM is not computed at
    all and ``attention`` is reported as 0.

    Returns ``{"loss", "ce", "attention", "lambda"}`` (detached scalars), ``"pred"`` (logits, detached) and
    ``"label"``.

    Args:
        loss_lambda: ``"adaptive"`` (the paper's ``max(0.2, 1 - 0.023 * epoch)``) or a fixed value in ``[0, 1]``.
        attention_loss: the attention term (default :class:`GradCAMAttentionLoss` with threshold 0.5, soft mode).
        cam_layer: dotted name of the Grad-CAM layer; default the network's ``cam_layer``.
        adaptive_slope: slope of the adaptive schedule (0.023 in the paper).
        adaptive_minimum: floor of the adaptive schedule (0.2 in the paper).
    """

    def __init__(
        self,
        loss_lambda: str | float = "adaptive",
        attention_loss: GradCAMAttentionLoss | None = None,
        cam_layer: str | None = None,
        adaptive_slope: float = 0.023,
        adaptive_minimum: float = 0.2,
    ) -> None:
        _lambda_value(loss_lambda, 0, adaptive_slope, adaptive_minimum)  # fail early on a bad value
        self.loss_lambda = loss_lambda
        self.attention_loss = attention_loss if attention_loss is not None else GradCAMAttentionLoss()
        if getattr(self.attention_loss, "reduction", "mean") != "mean":
            raise ValueError("the attention loss of a train step must reduce to the batch mean (reduction='mean').")
        self.cam_layer = cam_layer
        self.adaptive_slope = float(adaptive_slope)
        self.adaptive_minimum = float(adaptive_minimum)

    def lambda_at(self, epoch: int) -> float:
        """lambda at the 0-based ``epoch``."""
        return _lambda_value(self.loss_lambda, epoch, self.adaptive_slope, self.adaptive_minimum)

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict[str, torch.Tensor]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        data = cam_batch_to_device(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        if data["label"] is None:
            raise ValueError("CAMAttentionTrainStep needs 'label' in the batch.")
        lam = self.lambda_at(max(int(engine.state.epoch) - 1, 0))
        if lam < 1.0 and data["region"] is None:
            raise ValueError("CAMAttentionTrainStep with lambda < 1 needs 'region' (B, 1, H, W) in the batch.")
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=True)
        amp = bool(getattr(engine, "amp", False))
        ce_loss = engine.loss_function if getattr(engine, "loss_function", None) is not None else F.cross_entropy
        with autocast(data["image"].device, amp):
            if lam < 1.0:
                features, logits = cam_features_and_logits(engine.network, data["image"], self.cam_layer)
            else:
                features, logits = None, engine.network(data["image"])
                if isinstance(logits, Mapping):
                    logits = logits["logits"]
            ce = ce_loss(logits, data["label"])
        if features is not None:
            attention = self.attention_loss(features, logits, data["label"], data["region"])
            loss = lam * ce.float() + (1.0 - lam) * attention
        else:
            attention = torch.zeros((), device=ce.device)
            loss = ce
        backward_step(engine, loss, amp)
        return {
            "loss": loss.detach(),
            "ce": ce.detach().float(),
            "attention": attention.detach().float(),
            "lambda": torch.tensor(lam),
            "pred": logits.detach().float(),
            "label": data["label"],
        }


class CAMAttentionEvalStep:
    """``iteration_update`` of a ``SupervisedEvaluator``: eval mode, Grad-CAM with gradients enabled locally.

    The backbone runs without a graph; the Grad-CAM layer's output becomes a leaf, so the Grad-CAM backward only
    runs through the head and needs no trainable parameters. Returns ``{"image", "pred" (softmax probabilities),
    "label", "cam" (B, 1, H, W) normalised Grad-CAM at image size, "region"}`` and, with labels, ``"loss"`` = ``"ce"``
    (batch-mean cross-entropy: the validation loss for reduce-on-plateau) and ``"attention"`` (batch-mean
    ``L_att`` of the evaluation maps, with regions; else None).

    Args:
        attention_loss: computes ``"attention"`` (default :class:`GradCAMAttentionLoss`; ``mode="hard"`` gives
            one minus the paper's ratio).
        cam_layer: dotted name of the Grad-CAM layer; default the network's ``cam_layer``.
        cam_target: ``"label"`` (Grad-CAM of the true class, the default when labels are present: the class
            region belongs to it) or ``"pred"`` (of the predicted class, also used when there are no labels).
    """

    def __init__(
        self,
        attention_loss: GradCAMAttentionLoss | None = None,
        cam_layer: str | None = None,
        cam_target: str = "label",
    ) -> None:
        if cam_target not in ("label", "pred"):
            raise ValueError(f"cam_target must be 'label' or 'pred', got {cam_target!r}.")
        self.attention_loss = attention_loss if attention_loss is not None else GradCAMAttentionLoss()
        self.cam_layer = cam_layer
        self.cam_target = cam_target

    def __call__(self, engine: Engine, batchdata: Mapping) -> dict[str, Any]:
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        data = cam_batch_to_device(batchdata, engine.state.device, getattr(engine, "non_blocking", False))
        engine.network.eval()
        amp = bool(getattr(engine, "amp", False))
        with autocast(data["image"].device, amp):
            features, logits = cam_features_and_logits(
                engine.network, data["image"], self.cam_layer, detach_features=True
            )
        label = data["label"]
        target = label if (self.cam_target == "label" and label is not None) else logits.detach().argmax(1)
        with torch.enable_grad():
            cam = grad_cam_maps(features, logits, target, create_graph=False, size=data["image"].shape[2:])
        logits = logits.detach().float()
        out = dict(data, pred=torch.softmax(logits, dim=1), cam=cam.detach()[:, None])
        out["loss"] = out["ce"] = None if label is None else F.cross_entropy(logits, label)
        out["attention"] = None
        if label is not None and data["region"] is not None:
            values = self.attention_loss.from_cam(out["cam"], data["region"])
            out["attention"] = values.mean().detach()
        return out
