"""Per-method iteration steps and trainer / evaluator pieces for MONAI's engines, one module per method."""

from __future__ import annotations

from .lanet import (
    LANetEvalStep,
    LANetTrainStep,
    batch_to_device,
    check_stage,
    load_stage1_weights,
)

__all__ = ["LANetEvalStep", "LANetTrainStep", "batch_to_device", "check_stage", "load_stage1_weights"]
