"""Mixed precision and memory layout for training, on CUDA and on the CPU.

MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator`` autocast with ``torch.autocast("cuda")`` only, so ``amp`` does
nothing on a CPU. The bundles resolve their ``amp`` switch here instead, on the device the batch is on:

- CUDA: float16 autocast (MONAI's trainer adds its ``GradScaler``, as before);
- a CPU for which oneDNN has bfloat16 kernels (PyTorch's ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: AVX512
  CPUs, fast with AVX512-BF16 or AMX): bfloat16 autocast, which needs no gradient scaling (bfloat16 has float32's
  exponent range);
- a CPU without them: float32, with a warning. oneDNN falls back to reference kernels there: one training step of
  the BraTS PAM UNet (2 x 4 x 64 x 64 x 48) took 205 s under bfloat16 autocast against 3.0 s in float32 on a 2-core
  AVX2 EPYC, so ``amp`` never turns it on where it would be that slow.

``channels_last`` training (:func:`prepare_network`) keeps convolution weights and activations channels-last
(``torch.channels_last`` in 2D, ``torch.channels_last_3d`` in 3D), with PyTorch's instance norms replaced by
:class:`networks.blocks.LayoutPreservingInstanceNorm` (same parameters, same state-dict keys), which would otherwise
make every activation contiguous and every next convolution copy it back. ``benchmarks/training_step.py`` measures
both against eager float32.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from networks.blocks.norm import replace_instance_norms

__all__ = [
    "autocast",
    "autocast_dtype",
    "cpu_bf16_supported",
    "float32_outputs",
    "prepare_network",
    "to_channels_last",
]


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: AVX512
    CPUs; fast with AVX512-BF16 or AMX). ``False`` on AVX2-only CPUs, where bfloat16 runs reference kernels."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(check())
    except RuntimeError:
        return False


@functools.lru_cache(maxsize=None)
def _warn_no_bf16(capability: str) -> None:
    warnings.warn(
        f"amp is on but this CPU ({capability}) has no bfloat16 instructions oneDNN can use (AVX512, AVX512-BF16, "
        "AMX): bfloat16 autocast would run reference kernels (tens of times slower), so the CPU computes in float32. "
        "Set amp to false to silence this.",
        stacklevel=3,
    )


def autocast_dtype(device: torch.device | str, amp: bool) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: ``None`` (float32) when ``amp`` is off; ``torch.float16`` on CUDA;
    ``torch.bfloat16`` on a CPU with bfloat16 instructions (:func:`cpu_bf16_supported`); ``None`` with a warning
    (once) on any other CPU.

    Raises:
        ValueError: when ``amp`` is not a boolean (a string such as ``"false"`` from a config would be truthy).
    """
    if not isinstance(amp, bool):
        raise ValueError(f"amp must be true or false, got {amp!r} ({type(amp).__name__}).")
    if not amp:
        return None
    device_type = torch.device(device).type
    if device_type == "cuda":
        return torch.float16
    if device_type == "cpu":
        if cpu_bf16_supported():
            return torch.bfloat16
        _warn_no_bf16(torch.backends.cpu.get_cpu_capability())
        return None
    return None


def autocast(device: torch.device | str, amp: bool) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device``'s type with :func:`autocast_dtype`, or a no-op context when that is ``None``.

    Example::

        with autocast(images.device, amp=True):
            logits = network(images)
    """
    dtype = autocast_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory format when it is 4D (``torch.channels_last``) or 5D (``torch.channels_last_3d``),
    else ``x`` unchanged. Values, shape and autograd are unaffected."""
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.ndim == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def prepare_network(network: torch.nn.Module, channels_last: bool = False) -> torch.nn.Module:
    """Make ``network`` train channels-last, in place, and return it: 4D / 5D parameters and buffers (convolution
    weights) channels-last, every ``nn.InstanceNorm1d/2d/3d`` replaced by
    :class:`networks.blocks.LayoutPreservingInstanceNorm` sharing its parameters. The state dict keeps its keys and
    values, so checkpoints load into the plain network (and back). With ``channels_last=False`` the network is returned
    untouched.

    Call it after ``.to(device)``; the optimiser must be built after it (parameters are replaced by channels-last
    copies).
    """
    if not channels_last:
        return network
    network._apply(to_channels_last)
    replace_instance_norms(network)
    return network


def float32_outputs(outputs: Any) -> Any:
    """``outputs`` with every floating-point tensor (also inside tuples, lists and dicts) cast to float32, so losses
    and metrics after an autocast region see float32 whatever the region computed in."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() and outputs.dtype != torch.float32 else outputs
    if isinstance(outputs, Mapping):
        converted = {k: float32_outputs(v) for k, v in outputs.items()}
        return converted if type(outputs) is dict else type(outputs)(converted)
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):  # named tuple
        return type(outputs)(*(float32_outputs(v) for v in outputs))
    if isinstance(outputs, Sequence) and not isinstance(outputs, str):
        return type(outputs)(float32_outputs(v) for v in outputs)
    return outputs
