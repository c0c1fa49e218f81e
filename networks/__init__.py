"""Attention blocks, networks and the network registry.

Importing the package registers every network, so :func:`create_network` knows them all.
"""

from __future__ import annotations

from .blocks import (
    ATTENTION_BLOCKS,
    AttentionGate,
    AttentionSpec,
    ChannelAttention,
    ChannelSliceAttention,
    ConvBlockAttention,
    ProgressiveAttention,
    ProjectExcite,
    SliceAttention,
    SliceChannelAttention,
    attention_needs_slices,
    get_attention_block,
    get_attention_spec,
    get_skip_gate,
    is_skip_gate,
    key_slice_mask,
    list_attention_blocks,
    register_attention,
)
from .nets import (
    AttentionUNet,
    AttentionVNet,
    JointSegClsNet,
    LANet,
    ResNetClassifier,
)
from .registry import (  # noqa: I001
    NetworkSpec,
    build_segmentation_network,
    create_network,
    get_network_spec,
    list_networks,
    register_network,
)

__all__ = [
    "AttentionSpec",
    "NetworkSpec",
    "get_attention_spec",
    "get_network_spec",
    "AttentionVNet",
    "AttentionGate",
    "ChannelSliceAttention",
    "ConvBlockAttention",
    "ProjectExcite",
    "SliceChannelAttention",
    "get_skip_gate",
    "is_skip_gate",
    "ATTENTION_BLOCKS",
    "AttentionUNet",
    "JointSegClsNet",
    "LANet",
    "ResNetClassifier",
    "ChannelAttention",
    "ProgressiveAttention",
    "SliceAttention",
    "attention_needs_slices",
    "build_segmentation_network",
    "create_network",
    "get_attention_block",
    "key_slice_mask",
    "list_attention_blocks",
    "list_networks",
    "register_attention",
    "register_network",
]
