"""Ensemble of the fold models of a cross-validation (``python -m pipelines cross-validate``).

:class:`FoldEnsemble` runs every fold network on the same input and averages probabilities: softmax for class
logits, sigmoid for mask logits. It returns the averages in the members' own output layout and as *logits*, so the
code after the network (a predictor, an evaluator's post-processing) is unchanged: ``softmax(log(mean p)) = mean p``
and ``sigmoid(logit(mean p)) = mean p``.

:func:`fold_ensemble` builds one from a bundle's ``network_def`` and a list of checkpoints; an inference config uses
it through an overlay (the cross-validation writes one, ``<cv_dir>/configs/ensemble.yaml``)::

    network:
      _target_: pipelines.predictors.ensemble.fold_ensemble
      network: "@network_def"
      ckpt_paths: "@ckpt_path"        # a list: [<cv_dir>/fold0/models/model.pt, ...]
      device: "@device"
    predictor#ckpt_path: null         # the ensemble holds the weights

The ensemble is for inference in Python: ``torch.jit.script`` refuses it (its ``forward`` serves tensor and dict
outputs alike), and ``ckpt_export`` exports a bundle's ``network_def``, one fold model. To deploy the ensemble, export
each fold's network from its run folder and average the probabilities after them, or trace it for one output layout
(``torch.jit.trace(ensemble, example, strict=False)``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from ..handlers.checkpoints import load_weights

__all__ = ["ACTIVATIONS", "FoldEnsemble", "fold_ensemble"]

#: How an output is averaged: ``softmax`` over the channel axis (returned as log of the mean probability),
#: ``sigmoid`` per element (returned as the logit of the mean probability), ``mean`` (plain mean of the outputs).
ACTIVATIONS = ("softmax", "sigmoid", "mean")


def _average(outputs: Sequence[torch.Tensor], activation: str, eps: float) -> torch.Tensor:
    """Average ``outputs`` (same shape) under ``activation``; return logits of the mean probability."""
    stacked = torch.stack([o.float() for o in outputs], dim=0)
    if activation == "mean":
        return stacked.mean(dim=0)
    if activation == "softmax":
        prob = torch.softmax(stacked, dim=2).mean(dim=0)  # (M, B, C, ...): channels are axis 2
        return torch.log(prob.clamp_min(eps))
    prob = torch.sigmoid(stacked).mean(dim=0).clamp(eps, 1.0 - eps)
    return torch.log(prob) - torch.log1p(-prob)


class FoldEnsemble(nn.Module):
    """Mean of the probabilities of several networks of the same architecture (the folds of a cross-validation).

    For a tensor output ``(B, C, ...)`` the mean is taken over ``activation``; for a dict output (e.g.
    ``{"logits": (B, K), "seg": (B, 1, H, W)}``) each key is averaged by ``activations[key]``, by default ``softmax``
    for ``"logits"`` and ``sigmoid`` for every other key. The result has the members' layout, holding logits of the
    mean probability (see the module docstring); ``forward`` takes the image only (members run in their own mode:
    call ``eval()`` for inference).

    Args:
        networks: the member networks (at least one); same output layout.
        activation: for tensor outputs: ``"auto"`` (sigmoid for one channel, softmax otherwise) or one of
            :data:`ACTIVATIONS`.
        activations: for dict outputs: ``{key: activation}`` overriding the defaults.
        eps: probabilities are clamped to ``[eps, 1 - eps]`` before the log / logit.

    Raises:
        ValueError: no network, or an unknown activation.
    """

    def __init__(
        self,
        networks: Sequence[nn.Module],
        activation: str = "auto",
        activations: Mapping[str, str] | None = None,
        eps: float = 1e-7,
    ) -> None:
        super().__init__()
        if len(networks) == 0:
            raise ValueError("FoldEnsemble needs at least one network.")
        for name in (activation, *(activations or {}).values()):
            if name not in (*ACTIVATIONS, "auto"):
                raise ValueError(f"unknown activation {name!r}; expected 'auto' or one of {ACTIVATIONS}.")
        self.networks = nn.ModuleList(networks)
        self.activation = activation
        self.activations = {"logits": "softmax", **dict(activations or {})}
        self.eps = float(eps)

    def _tensor_activation(self, output: torch.Tensor) -> str:
        if self.activation != "auto":
            return self.activation
        return "sigmoid" if output.ndim < 2 or output.shape[1] == 1 else "softmax"

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """``x`` ``(B, C_in, *spatial)`` -> the members' output layout with logits of the mean probabilities."""
        outputs = [net(x) for net in self.networks]
        first = outputs[0]
        if isinstance(first, Mapping):
            return {
                key: _average([o[key] for o in outputs], self.activations.get(key, "sigmoid"), self.eps)
                for key in first
            }
        return _average(outputs, self._tensor_activation(first), self.eps)


def fold_ensemble(
    network: nn.Module,
    ckpt_paths: str | Sequence[str],
    device: str | torch.device | None = None,
    activation: str = "auto",
    activations: Mapping[str, str] | None = None,
) -> FoldEnsemble:
    """A :class:`FoldEnsemble` of copies of ``network``, each with the weights of one checkpoint, in eval mode.

    Args:
        network: the bundle's network (``network_def``); copied once per checkpoint, left unchanged.
        ckpt_paths: checkpoint files (any format :func:`pipelines.handlers.checkpoints.load_weights` reads); a
            single path gives a one-member ensemble.
        device: where to put the ensemble (default: where ``network`` is).
        activation, activations: see :class:`FoldEnsemble`.

    Raises:
        FileNotFoundError: naming a checkpoint that does not exist.
    """
    paths = [ckpt_paths] if isinstance(ckpt_paths, str) else list(ckpt_paths)
    members = []
    for path in paths:
        member = copy.deepcopy(network)
        load_weights(member, str(path), required=True)
        members.append(member)
    ensemble = FoldEnsemble(members, activation=activation, activations=activations)
    if device is not None:
        ensemble = ensemble.to(device)
    return ensemble.eval()
