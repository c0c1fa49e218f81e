"""An inferer for training steps: autocast on the batch's own device and channels-last inputs.

MONAI's ``SupervisedTrainer`` runs ``inferer(inputs, network)`` inside ``torch.autocast("cuda")`` when its ``amp`` is
on, which leaves a CPU in float32. :class:`AutocastInferer` resolves the same switch on the device the inputs are
on (:func:`pipelines.engines.precision.autocast_dtype`: float16 on CUDA, bfloat16 on a CPU with bfloat16
instructions), so ``--amp true`` speeds up CPU training where the CPU can, and returns float32 outputs so the loss
is computed in float32 either way.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from monai.inferers import Inferer, SimpleInferer

from pipelines.engines.precision import (
    autocast,
    autocast_dtype,
    float32_outputs,
    to_channels_last,
)

__all__ = ["AutocastInferer"]


def _first_tensor(inputs: Any) -> torch.Tensor | None:
    if isinstance(inputs, torch.Tensor):
        return inputs
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


class AutocastInferer(Inferer):
    """Run ``inferer(inputs, network, ...)`` under :func:`pipelines.engines.precision.autocast` for ``amp`` on the
    inputs' device, with channels-last inputs when ``channels_last`` (4D / 5D tensors; pair it with a network made
    channels-last by :func:`pipelines.engines.precision.prepare_network`). Floating-point outputs come back in
    float32 (tensors, and tensors inside tuples, lists and dicts).

    With ``amp`` off and ``channels_last`` off it is exactly ``inferer`` (MONAI's ``SimpleInferer`` by default).

    Args:
        amp: the bundle's ``amp`` switch (a boolean).
        channels_last: hand tensor inputs to the network channels-last.
        inferer: the inferer to wrap; ``SimpleInferer()`` when ``None``.

    Raises:
        ValueError: when ``amp`` is not a boolean.

    Example::

        trainer = SupervisedTrainer(..., inferer=AutocastInferer(amp=True, channels_last=True), amp=True)
    """

    def __init__(self, amp: bool = False, channels_last: bool = False, inferer: Inferer | None = None) -> None:
        super().__init__()
        if not isinstance(amp, bool):
            raise ValueError(f"amp must be true or false, got {amp!r} ({type(amp).__name__}).")
        self.amp = amp
        self.channels_last = bool(channels_last)
        self.inferer = SimpleInferer() if inferer is None else inferer

    def __call__(self, inputs: Any, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Args:
            inputs: the batch's images ``(B, C, *spatial)`` (or a list / tuple holding tensors, passed on as is
                apart from the layout of 4D / 5D tensors).
            network: the model.
            args, kwargs: passed on to ``inferer``.

        Returns:
            ``inferer``'s output with floating-point tensors in float32.
        """
        if self.channels_last:
            inputs = self._layout(inputs)
        first = _first_tensor(inputs)
        if first is None or autocast_dtype(first.device, self.amp) is None:
            outputs = self.inferer(inputs, network, *args, **kwargs)
            return float32_outputs(outputs) if self.amp else outputs
        with autocast(first.device, self.amp):
            outputs = self.inferer(inputs, network, *args, **kwargs)
        return float32_outputs(outputs)

    def _layout(self, inputs: Any) -> Any:
        if isinstance(inputs, torch.Tensor):
            return to_channels_last(inputs)
        if isinstance(inputs, (list, tuple)):
            return type(inputs)(self._layout(item) for item in inputs)
        return inputs
