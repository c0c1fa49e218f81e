"""Adversarial robustness of classifiers: projected gradient descent (PGD) in the [0, 1] image space.

Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018; the LA-Net paper
(Fan et al., Medical Image Analysis 90 (2023) 102960) evaluates with eps 8/255, step 2/255, 4 steps and a
random start, before the normalisation to the network's input range.

* :func:`pgd_attack`: the attack on one batch.
* :class:`PGDRobustnessHandler`: an evaluator handler that attacks every batch and reports accuracy and AUC clean
  and under PGD (``robustness.json`` and a section of :class:`~pipelines.evaluation.MetricsReportHandler`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import ignite.distributed as idist
import torch
import torch.nn as nn
import torch.nn.functional as F
from ignite.engine import Engine, Events

from networks.nets.lanet import split_outputs

from ..metrics.classification import ClassificationMetrics
from .reports import json_safe

__all__ = ["PGDRobustnessHandler", "from_minus_one_one", "pgd_attack", "to_minus_one_one"]

logger = logging.getLogger(__name__)


def to_minus_one_one(x: torch.Tensor) -> torch.Tensor:
    """Map images in [0, 1] to [-1, 1] (the BUSI pipeline's normalisation)."""
    return x * 2.0 - 1.0


def from_minus_one_one(x: torch.Tensor) -> torch.Tensor:
    """Map network inputs in [-1, 1] back to [0, 1] images (clamped), the inverse of :func:`to_minus_one_one`."""
    return ((x + 1.0) / 2.0).clamp(0, 1)


def pgd_attack(
    model: nn.Module,
    images01: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 8 / 255,
    step: float = 2 / 255,
    steps: int = 4,
    random_start: bool = True,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = to_minus_one_one,
    seed: int | None = 0,
) -> torch.Tensor:
    """L-infinity PGD on the cross-entropy of the model's logits.

    Each step: ``x <- clip_[0,1](clip_eps-ball(x + step * sign(grad_x CE(model(normalize(x)), y))))``. The model
    is run in eval mode (its mode is restored afterwards); parameter gradients are left untouched.

    Args:
        model: returns logits ``(B, num_classes)``, an LA-Net dict with ``"logits"`` or a ``(logits, mask)``
            tuple.
        images01: clean images in [0, 1], ``(B, C, *spatial)``.
        labels: true classes ``(B,)``.
        eps: radius of the L-infinity ball.
        step: step size.
        steps: number of steps (0 returns the (randomly started) images).
        random_start: start from a uniform point in the ball.
        normalize: maps [0, 1] images to the network input (default ``x * 2 - 1``; None = identity).
        seed: seed of the random start (None: the global generator).

    Returns:
        adversarial images in [0, 1], detached, same shape as ``images01``, within ``eps`` of it.

    Raises:
        ValueError: negative ``eps``, ``step`` or ``steps``, or images outside [0, 1].
    """
    if eps < 0 or step < 0 or steps < 0:
        raise ValueError(f"eps, step and steps must be non-negative, got {eps!r}, {step!r}, {steps!r}.")
    clean = images01.detach().float()
    if clean.numel() and (clean.min() < 0 or clean.max() > 1):
        raise ValueError(
            f"pgd_attack works in the [0, 1] image space; got values in [{clean.min().item():.3g}, "
            f"{clean.max().item():.3g}] (pass the images before normalisation and set `normalize`)."
        )
    normalize = normalize or (lambda x: x)
    labels = torch.as_tensor(labels, device=clean.device).reshape(-1).long()
    lower, upper = (clean - eps).clamp(0, 1), (clean + eps).clamp(0, 1)
    adv = clean.clone()
    if random_start and eps > 0:
        generator = None
        if seed is not None:
            generator = torch.Generator(device=clean.device).manual_seed(int(seed))
        noise = torch.rand(clean.shape, generator=generator, device=clean.device, dtype=clean.dtype)
        adv = torch.max(torch.min(adv + (noise * 2 - 1) * eps, upper), lower)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            adv.requires_grad_(True)
            logits, _ = split_outputs(model(normalize(adv)))
            loss = F.cross_entropy(logits.float(), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + step * grad.sign()
                adv = torch.max(torch.min(adv, upper), lower)
            adv = adv.detach()
    finally:
        model.train(was_training)
    return adv.detach()


def _lanet_output(output: Any) -> tuple[Any, Any, Any]:
    """``(image, label, pred)`` of an LA-Net evaluator output (:class:`pipelines.engines.LANetEvalStep`)."""
    return output["image"], output["label"], output["pred"]


class PGDRobustnessHandler:
    """Attacks every batch of an evaluator with :func:`pgd_attack` and reports accuracy and AUC clean and under PGD.

    At each iteration the network inputs are mapped to the [0, 1] image space (``to_unit``), attacked with the
    ``(B,)`` labels, and the softmax of the adversarial logits is buffered next to the clean probabilities
    (:class:`~pipelines.metrics.ClassificationMetrics`, gathered across ranks under DDP). The attack runs on the
    unwrapped network (``network.module`` under DDP): it needs input gradients only, no collective. When the
    evaluator completes, ``section`` is ``{"eps", "step", "steps", "random_start", "space", "n", "clean":
    {"accuracy", "auc"}, "pgd": {"accuracy", "auc"}}``, ``engine.state.metrics`` gets ``pgd_accuracy`` and
    ``pgd_auc``, and rank 0 writes ``<save_dir>/robustness.json``. Attach it to the evaluator (``val_handlers``)
    before :class:`~pipelines.evaluation.MetricsReportHandler` to add the section to the summary.

    Args:
        save_dir: folder of ``filename`` (None: write nothing).
        class_names: one per class.
        eps, step, steps, random_start: the attack (:func:`pgd_attack`), in the [0, 1] image space.
        seed: seed of the random start; batch ``i`` (from 0) of rank ``r`` uses ``seed + i + 100003 * r``.
        threshold: decision threshold of binary problems.
        to_unit: network inputs -> [0, 1] images (default: from [-1, 1]).
        normalize: [0, 1] images -> network inputs (default: to [-1, 1]).
        output_transform: ``engine.state.output`` -> ``(network inputs (B, C, ...), labels (B,), clean class
            probabilities (B, K))``; the default reads ``image``, ``label``, ``pred`` of the LA-Net iterations.
        filename: the JSON file.
        section_name: key in ``summary.json``.
    """

    def __init__(
        self,
        save_dir: str | None,
        class_names: Sequence[str],
        eps: float = 8 / 255,
        step: float = 2 / 255,
        steps: int = 4,
        random_start: bool = True,
        seed: int = 0,
        threshold: float = 0.5,
        to_unit: Callable[[torch.Tensor], torch.Tensor] = from_minus_one_one,
        normalize: Callable[[torch.Tensor], torch.Tensor] = to_minus_one_one,
        output_transform: Callable = _lanet_output,
        filename: str = "robustness.json",
        section_name: str = "robustness",
    ) -> None:
        if eps < 0 or step < 0 or steps < 0:
            raise ValueError(f"eps, step and steps must be non-negative, got {eps!r}, {step!r}, {steps!r}.")
        self.save_dir = save_dir
        self.class_names = tuple(class_names)
        self.eps, self.step, self.steps = float(eps), float(step), int(steps)
        self.random_start = bool(random_start)
        self.seed = int(seed)
        self.to_unit = to_unit
        self.normalize = normalize
        self.output_transform = output_transform
        self.filename = filename
        self.section_name = section_name
        self.clean = ClassificationMetrics(class_names=self.class_names, threshold=threshold)
        self.pgd = ClassificationMetrics(class_names=self.class_names, threshold=threshold)
        self.section: dict[str, Any] | None = None
        self._batch = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self)

    def reset(self, engine: Engine | None = None) -> None:
        self.clean.reset()
        self.pgd.reset()
        self.section = None
        self._batch = 0

    def iteration_completed(self, engine: Engine) -> None:
        images, labels, probs = self.output_transform(engine.state.output)
        network = getattr(engine.network, "module", engine.network)  # DDP: the local replica
        labels = torch.as_tensor(labels).reshape(-1).long()
        seed = self.seed + self._batch + 100003 * idist.get_rank()
        adv = pgd_attack(network, self.to_unit(torch.as_tensor(images).float()), labels.to(images.device),
                         eps=self.eps, step=self.step, steps=self.steps, random_start=self.random_start,
                         normalize=self.normalize, seed=seed)
        with torch.no_grad():
            adv_logits, _ = split_outputs(network(self.normalize(adv)))
        self.clean(torch.as_tensor(probs).float(), labels)
        self.pgd(torch.softmax(adv_logits.float(), dim=1), labels)
        self._batch += 1

    def __call__(self, engine: Engine) -> None:
        clean, adv = self.clean.aggregate(), self.pgd.aggregate()  # every rank: gathers
        self.section = {
            "eps": self.eps, "step": self.step, "steps": self.steps, "random_start": self.random_start,
            "space": "[0, 1] image before normalisation to [-1, 1]",
            "n": len(self.clean.arrays()[0]),
            "clean": {k: float(clean[k]) for k in ("accuracy", "auc")},
            "pgd": {k: float(adv[k]) for k in ("accuracy", "auc")},
        }
        engine.state.metrics.update({f"pgd_{k}": v for k, v in self.section["pgd"].items()})
        if idist.get_rank() != 0 or self.save_dir is None:
            return
        os.makedirs(self.save_dir, exist_ok=True)
        with open(os.path.join(self.save_dir, self.filename), "w") as f:
            json.dump(json_safe(self.section), f, indent=2)
        logger.info("PGD robustness: %s", self.section)

    def markdown(self) -> str:
        """The clean vs PGD table of the last run."""
        if self.section is None:
            return ""
        r = self.section
        lines = [f"## PGD robustness (eps {r['eps']:.4f}, step {r['step']:.4f}, {r['steps']} steps)", "",
                 "| Metric | clean | PGD |", "|---|---|---|"]
        for key in ("accuracy", "auc"):
            lines.append(f"| {key} | {r['clean'][key]:.3f} | {r['pgd'][key]:.3f} |")
        return "\n".join(lines) + "\n"
