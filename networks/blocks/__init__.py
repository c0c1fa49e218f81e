"""Attention blocks: PAM and the name registry of attention blocks."""

from __future__ import annotations

from .attention import (
    ATTENTION_BLOCKS,
    attention_needs_slices,
    get_attention_block,
    list_attention_blocks,
    register_attention,
)
from .pam import ChannelAttention, ProgressiveAttention, SliceAttention, key_slice_mask
from .zoo import ChannelSliceAttention, ConvBlockAttention, ProjectExcite, SliceChannelAttention
from .attention_gate import AttentionGate, SkipPassThrough, get_skip_gate, is_skip_gate

__all__ = [
    "AttentionGate",
    "ChannelSliceAttention",
    "ConvBlockAttention",
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
    "key_slice_mask",
    "list_attention_blocks",
    "register_attention",
]
