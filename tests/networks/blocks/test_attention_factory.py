"""Attention blocks built by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer

from networks.blocks.attention import (
    ATTENTION_BLOCKS,
    attention_needs_slices,
    get_attention_block,
    list_attention_blocks,
    register_attention,
)
from networks.blocks.pam import ProgressiveAttention

SHAPES = [(3, (2, 16, 6, 5, 8)), (2, (2, 16, 6, 8)), (2, (1, 16, 5, 8))]


def test_registered_names():
    assert {"none", "se", "pam"} <= set(ATTENTION_BLOCKS)
    assert list_attention_blocks() == sorted(ATTENTION_BLOCKS)
    assert attention_needs_slices("pam") and attention_needs_slices("PAM")
    assert not attention_needs_slices("se") and not attention_needs_slices("none")


def test_none_is_identity():
    block = get_attention_block("none", 3, 16)
    assert isinstance(block, nn.Identity)


def test_se_is_monai_channel_se_with_r8():
    block = get_attention_block("se", 3, 32)
    assert isinstance(block, ChannelSELayer)
    first, second = block.fc[0], block.fc[2]
    assert (first.in_features, first.out_features, second.out_features) == (32, 4, 32)
    assert not block.add_residual
    x = torch.randn(2, 32, 4, 4, 4)
    w = torch.sigmoid(second(torch.relu(first(x.mean(dim=(2, 3, 4))))))
    torch.testing.assert_close(block(x), x * w[:, :, None, None, None])
    # r clamps for narrow layers, and can be set
    assert get_attention_block("se", 3, 4).fc[0].out_features == 1
    assert get_attention_block("se", 2, 32, r=2).fc[0].out_features == 16
    with pytest.raises(ValueError, match=r"r=0"):
        get_attention_block("se", 3, 32, r=0)


def test_pam_options_are_passed_through():
    block = get_attention_block(
        "Pam", 3, 32, num_slices=16, slice_axis=0, slice_reduction=4, channel_reduction=2, pool="max"
    )
    assert isinstance(block, ProgressiveAttention)
    sa = block.slice_attention
    assert (sa.channels, sa.num_slices, sa.hidden, sa.pool, sa.slice_axis) == (32, 16, 4, "max", 0)
    assert block.channel_attention.fc[0].out_features == 16
    with pytest.raises(ValueError, match=r"'pam'.*num_slices"):
        get_attention_block("pam", 3, 32)


@pytest.mark.parametrize("name", sorted(ATTENTION_BLOCKS))
@pytest.mark.parametrize("spatial_dims, shape", SHAPES)
def test_every_block_keeps_the_shape(name, spatial_dims, shape):
    block = get_attention_block(name, spatial_dims, shape[1], num_slices=shape[-1])
    x = torch.randn(*shape)
    assert block(x).shape == x.shape


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown attention block 'cbam9'.*'none'.*'pam'.*'se'"):
        get_attention_block("cbam9", 3, 16)


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match=r"\['slice_reduction'\].*'se'"):
        get_attention_block("se", 3, 16, slice_reduction=4)
    with pytest.raises(ValueError, match=r"'pam'"):
        get_attention_block("pam", 3, 16, num_slices=8, r=4)


def test_register_attention_decorator():
    @register_attention("test_scale", needs_slices=True)
    def _build(spatial_dims, channels, num_slices=None, slice_axis=-1, factor=2.0):
        class Scale(nn.Module):
            def forward(self, x):
                return x * factor

        return Scale()

    try:
        assert "test_scale" in list_attention_blocks() and attention_needs_slices("test_scale")
        block = get_attention_block("test_scale", 3, 4, num_slices=2, factor=3.0)
        torch.testing.assert_close(block(torch.ones(1, 4, 2, 2, 2)), torch.full((1, 4, 2, 2, 2), 3.0))
        with pytest.raises(ValueError, match=r"already registered"):
            register_attention("TEST_SCALE")(_build)
    finally:
        ATTENTION_BLOCKS.pop("test_scale", None)
    assert "test_scale" not in list_attention_blocks()


def test_package_reexports():
    import networks

    for name in ("get_attention_block", "register_attention", "ProgressiveAttention", "SliceAttention",
                 "ChannelAttention", "key_slice_mask"):
        assert hasattr(networks, name) and name in networks.__all__


@pytest.mark.parametrize("name", [n for n in list_attention_blocks() if n != "ag"])  # ag gates skips, not a block
@pytest.mark.parametrize("spatial_dims,shape", SHAPES)
def test_blocks_give_the_same_output_on_channels_last_inputs(name, spatial_dims, shape):
    """The sliding-window inferer hands channels-last windows to every block (pooling goes through
    ``networks.blocks.pam.pool_over`` there): the result must not depend on the memory layout."""
    torch.manual_seed(0)
    depth = shape[-1]
    kwargs = {"num_slices": depth} if attention_needs_slices(name) else {}
    block = get_attention_block(name, spatial_dims, shape[1], **kwargs).eval()
    x = torch.randn(shape)
    layout = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    with torch.no_grad():
        expected, out = block(x), block(x.contiguous(memory_format=layout))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_registry_fields_drive_the_networks():
    """Each block declares what it needs; the networks follow the declaration, not lists of names."""
    from networks.blocks.attention import AttentionSpec, get_attention_spec
    from networks.blocks.attention_gate import SkipPassThrough
    from networks.nets.unet import AttentionUNet
    from networks.nets.vnet import AttentionVNet

    spec = get_attention_spec("PAM")
    assert isinstance(spec, AttentionSpec) and spec.needs_slices and spec.placement == "level"
    assert spec.vnet_bottleneck == "se" and dict(spec.vnet_options) == {"slice_reduction": 8, "channel_reduction": 4}
    assert get_attention_spec("ag").placement == "skip" and get_attention_spec("ag").is_skip_gate
    with pytest.raises(ValueError, match=r"placement must be one of"):
        AttentionSpec("x", nn.Identity, placement="middle")

    class Gate(nn.Module):
        def __init__(self, spatial_dims, skip_channels, gate_channels, scale=2.0):
            super().__init__()
            self.skip_channels, self.scale = skip_channels, scale

        def forward(self, x, g):
            return x * self.scale

    register_attention("test_gate", placement="skip")(Gate)

    @register_attention("test_sliced", needs_slices=True, vnet_bottleneck="se", vnet_options={"r": 2})
    def build_sliced(spatial_dims, channels, num_slices=None, slice_axis=-1, r=8):
        block = nn.Identity()
        block.num_slices, block.r = num_slices, r
        return block

    try:
        # a skip gate is placed on the skips, the levels get no block
        net = AttentionUNet(2, 1, 2, features=(4, 8, 16), attention="test_gate", attention_kwargs={"scale": 3.0})
        assert [(type(lvl.gate), lvl.gate.skip_channels, lvl.gate.scale) for lvl in net.decoder] == [
            (Gate, 8, 3.0), (Gate, 4, 3.0)
        ]
        assert all(isinstance(lvl.attention, nn.Identity) for lvl in (*net.encoder, *net.decoder))
        assert all(isinstance(lvl.gate, SkipPassThrough) for lvl in AttentionUNet(2, 1, 2, (4, 8), "se").decoder)
        # a slice-sized block requires the patch depth, and gets it halved per level
        with pytest.raises(ValueError, match=r"'test_sliced' is sized by the patch depth: pass patch_size"):
            AttentionUNet(3, 1, 2, features=(4, 8, 16), attention="test_sliced")
        with pytest.raises(ValueError, match=r"divisible by 4"):
            AttentionUNet(3, 1, 2, features=(4, 8, 16), attention="test_sliced", patch_size=(8, 8, 6))
        net = AttentionUNet(3, 1, 2, features=(4, 8, 16), attention="test_sliced", patch_size=(8, 8, 12))
        assert [lvl.attention.num_slices for lvl in net.encoder] == [12, 6, 3]
        # VNet: its bottleneck declaration and its options
        vnet = AttentionVNet(3, 1, 2, features=(4, 8, 16), attention="test_sliced", patch_size=(8, 8, 12))
        assert isinstance(vnet.encoder[-1].attention, ChannelSELayer) and vnet.encoder[-1].attention.fc[0].out_features == 16 // 8
        assert [lvl.attention.r for lvl in vnet.encoder[:-1]] == [2, 2]
    finally:
        ATTENTION_BLOCKS.pop("test_gate", None)
        ATTENTION_BLOCKS.pop("test_sliced", None)
