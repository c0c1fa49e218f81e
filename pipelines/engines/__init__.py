"""Per-method iteration steps and trainer / evaluator pieces for MONAI's engines, one module per method, and the
mixed-precision / channels-last training helpers (:mod:`.precision`)."""

from __future__ import annotations

from .cam_attention import (
    CAMAttentionEvalStep,
    CAMAttentionTrainStep,
    cam_batch_to_device,
    cam_features_and_logits,
)
from .detection import (
    DetectionEvalStep,
    DetectionLoss,
    DetectionPrepareBatch,
    detection_batch_to_device,
    detection_collate,
    detection_loss_terms,
    load_init_weights,
)
from .joint_segcls import (
    JointSegClsEvalStep,
    JointSegClsPrepareBatch,
    joint_batch_to_device,
)
from .lanet import (
    LANetEvalStep,
    LANetTrainStep,
    batch_to_device,
    check_stage,
    load_stage1_weights,
)
from .precision import (
    autocast,
    autocast_dtype,
    cpu_bf16_supported,
    float32_outputs,
    prepare_network,
    to_channels_last,
)

__all__ = ["CAMAttentionEvalStep", "CAMAttentionTrainStep", "cam_batch_to_device", "cam_features_and_logits",
           "LANetEvalStep", "LANetTrainStep", "batch_to_device", "check_stage", "load_stage1_weights"]
__all__ += ["JointSegClsEvalStep", "JointSegClsPrepareBatch", "joint_batch_to_device"]
__all__ += ["DetectionEvalStep", "DetectionLoss", "DetectionPrepareBatch", "detection_batch_to_device",
            "detection_collate", "detection_loss_terms", "load_init_weights"]
__all__ += ["autocast", "autocast_dtype", "cpu_bf16_supported", "float32_outputs", "prepare_network",
            "to_channels_last"]
