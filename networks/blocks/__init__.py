"""Attention blocks (PAM, the comparison zoo, the attention gate), their registry; a layout-preserving instance norm."""

from __future__ import annotations

from .attention import (
    ATTENTION_BLOCKS,
    AttentionSpec,
    attention_needs_slices,
    get_attention_block,
    get_attention_spec,
    is_skip_gate,
    list_attention_blocks,
    register_attention,
)
from .attention_gate import AttentionGate, SkipPassThrough, get_skip_gate
from .dual_domain import DualDomainBlock
from .latent_augment import LatentAugmentor, class_counts, minority_classes
from .norm import LayoutPreservingInstanceNorm, replace_instance_norms
from .pam import (
    ChannelAttention,
    ProgressiveAttention,
    SliceAttention,
    key_slice_descriptor,
    key_slice_mask,
    pool_over,
)
from .zoo import (
    CBAMChannelGate,
    CBAMSpatialGate,
    ChannelSliceAttention,
    ConvBlockAttention,
    ProjectExcite,
    SliceChannelAttention,
)

__all__ = [
    "AttentionGate",
    "AttentionSpec",
    "CBAMChannelGate",
    "CBAMSpatialGate",
    "get_attention_spec",
    "ChannelSliceAttention",
    "ConvBlockAttention",
    "DualDomainBlock",
    "LatentAugmentor",
    "class_counts",
    "minority_classes",
    "ProjectExcite",
    "SkipPassThrough",
    "SliceChannelAttention",
    "get_skip_gate",
    "is_skip_gate",
    "ATTENTION_BLOCKS",
    "ChannelAttention",
    "ProgressiveAttention",
    "SliceAttention",
    "attention_needs_slices",
    "get_attention_block",
    "key_slice_descriptor",
    "key_slice_mask",
    "LayoutPreservingInstanceNorm",
    "pool_over",
    "replace_instance_norms",
    "list_attention_blocks",
    "register_attention",
]
