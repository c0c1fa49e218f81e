"""Checkpoints of resumable bundle training: the newest interval checkpoint, best-metric state, loading weights.

:func:`networks.utils.extract_model_state` (re-exported here) is the one place that turns whatever a checkpoint file holds (a bare state dict, a
training state ``{"model": ..., "optimizer": ...}``, the state of a ``DistributedDataParallel`` / ``DataParallel``
wrapper with ``module.`` key prefixes, a module) into the plain state dict of the network; :func:`load_weights`
reads a file through it.
"""

from __future__ import annotations

import glob
import os
import re

import torch
import torch.nn as nn
from ignite.engine import Engine

from networks.utils import MODEL_STATE_KEYS, WRAPPER_PREFIXES, extract_model_state

__all__ = [
    'LAST_CHECKPOINT_PREFIX', 'MODEL_STATE_KEYS', 'WRAPPER_PREFIXES', 'BestMetricState', 'attach_handlers',
    'extract_model_state', 'latest_checkpoint', 'load_weights',
]


#: ``CheckpointSaver`` writes interval checkpoints as ``checkpoint_epoch=<N>.pt``; the bundles keep the last one.
LAST_CHECKPOINT_PREFIX = "checkpoint_epoch="


def latest_checkpoint(ckpt_dir: str, prefix: str = LAST_CHECKPOINT_PREFIX) -> str | None:
    """Return the interval checkpoint with the highest epoch in ``ckpt_dir``, or ``None`` if there is none.

    Bundles use it to resume an interrupted training: ``CheckpointLoader`` is enabled only when this returns a path.

    Args:
        ckpt_dir: folder the training's ``CheckpointSaver`` writes to (need not exist).
        prefix: file name prefix before the epoch number.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.pt$")
    found = []
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{glob.escape(prefix)}*.pt")):
        match = pattern.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


class BestMetricState:
    """Makes an evaluator's best validation metric part of a checkpoint (``state_dict``/``load_state_dict``).

    Without it a resumed training forgets its best score and the first validation after resuming overwrites the
    best model even when it is worse. Put it in both the ``CheckpointSaver`` ``save_dict`` and the
    ``CheckpointLoader`` ``load_dict`` of a training config.

    Args:
        engine: the validation engine whose ``state.best_metric`` / ``state.best_metric_epoch`` are kept.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict:
        state = self.engine.state
        return {"best_metric": getattr(state, "best_metric", -1), "best_metric_epoch": getattr(state, "best_metric_epoch", -1)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.engine.state.best_metric = state_dict["best_metric"]
        self.engine.state.best_metric_epoch = state_dict["best_metric_epoch"]


def attach_handlers(engine: Engine, handlers) -> Engine:
    """Attach handlers that refer to ``engine`` itself (so cannot be passed to its constructor in a config).

    Disabled config components arrive as ``None`` and are skipped. Handlers are attached in order, so put a
    ``CheckpointLoader`` first.

    Returns:
        the engine, for chaining in config expressions.
    """
    for handler in handlers or ():
        if handler is not None:
            handler.attach(engine)
    return engine


def load_weights(network: nn.Module, path: str | None, strict: bool = True, required: bool = False) -> bool:
    """Load a model state into ``network`` from a bundle checkpoint.

    Accepts everything :func:`extract_model_state` does: the ``model.pt`` a ``CheckpointSaver`` writes for the best
    metric (a bare state dict), an interval checkpoint ``{"model": state, "optimizer": ...}``, a plain state dict,
    one saved from a ``DistributedDataParallel`` wrapper (``module.`` prefixes). ``network`` may itself be wrapped.

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
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    device = next(network.parameters()).device
    state = extract_model_state(torch.load(path, map_location=device, weights_only=True))
    network.load_state_dict(state, strict=strict)
    return True
