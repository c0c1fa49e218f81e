"""Small utilities shared by the networks and the pipelines that load them."""

from __future__ import annotations

from collections.abc import Mapping

import torch.nn as nn

__all__ = ["MODEL_STATE_KEYS", "WRAPPER_PREFIXES", "extract_model_state"]


#: Keys under which checkpoints nest the model state: MONAI's ``CheckpointSaver`` ``save_dict`` key of the bundles
#: (``model``), PyTorch Lightning / timm style (``state_dict``) and MONAI model-zoo style (``network``).
MODEL_STATE_KEYS = ("model", "state_dict", "network")


#: Key prefixes that wrappers add to a module's state dict: ``DistributedDataParallel`` / ``DataParallel``
#: (``module.``) and ``torch.compile`` (``_orig_mod.``).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def extract_model_state(obj: Mapping | nn.Module, keys: tuple[str, ...] = MODEL_STATE_KEYS) -> dict:
    """The plain state dict of a network from what a checkpoint holds.

    - a module (a ``DataParallel`` / ``DistributedDataParallel`` wrapper is unwrapped first, as in
      :func:`monai.networks.utils.get_state_dict`) gives its ``state_dict()``;
    - a mapping with one of ``keys`` whose value is a mapping (``{"model": state, "optimizer": ...}``, the interval
      checkpoint of the bundles) gives that value, looked up again in case of further nesting;
    - a wrapper prefix of :data:`WRAPPER_PREFIXES` (``module.`` of a DDP-saved state, ``_orig_mod.`` of a compiled
      module) is removed when *every* key carries it (so a network with a submodule that happens to be called
      ``module`` keeps its keys);
    - anything else is taken as a bare state dict.

    Args:
        obj: the loaded checkpoint (``torch.load``'s result) or a module.
        keys: keys under which a state is nested, tried in order.

    Returns:
        a new ``dict`` from parameter / buffer names to tensors, ready for :meth:`torch.nn.Module.load_state_dict`.

    Raises:
        TypeError: ``obj`` is neither a module nor a mapping.
    """
    if isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        obj = obj.module
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"expected a state dict, a checkpoint mapping or a module, got {type(obj).__name__}.")
    nested = True
    while nested:
        nested = False
        for key in keys:
            if isinstance(obj.get(key), Mapping):
                obj, nested = obj[key], True
                break
    state = dict(obj)
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(isinstance(k, str) and k.startswith(prefix) for k in state):
                state, stripped = {k[len(prefix):]: v for k, v in state.items()}, True
    return state

