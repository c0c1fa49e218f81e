"""AttentionVNet: structure, attention placement, shapes, checks and the bundle entry point."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer

from networks.blocks.attention_gate import AttentionGate
from networks.blocks.pam import ProgressiveAttention
from networks.blocks.zoo import ConvBlockAttention
from networks.nets.vnet import AttentionVNet
from networks.registry import build_segmentation_network

TINY = (4, 8, 8, 16, 16)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_default_structure_is_the_papers_vnet():
    net = AttentionVNet(patch_size=(32, 32, 32))
    assert [len(stage.convs.convs) for stage in net.encoder] == [1, 2, 3, 3, 3]
    assert [len(stage.convs.convs) for stage in net.decoder] == [3, 3, 2, 1]
    conv = net.encoder[1].convs.convs[0]
    assert conv.conv.kernel_size == (5, 5, 5) and conv.conv.in_channels == conv.conv.out_channels == 32
    assert [type(m) for m in conv.adn.children()] == [nn.BatchNorm3d, nn.PReLU]  # conv -> norm -> act
    assert conv.adn.A.num_parameters == 32
    down = net.encoder[1].down.conv
    assert (down.kernel_size, down.stride, down.in_channels, down.out_channels) == ((2, 2, 2), (2, 2, 2), 16, 32)
    up = net.decoder[0].up.conv
    assert isinstance(up, nn.ConvTranspose3d) and (up.in_channels, up.out_channels, up.stride) == (256, 128, (2, 2, 2))
    assert [stage.convs.convs[0].conv.in_channels for stage in net.decoder] == [256, 128, 64, 32]
    assert (net.head.in_channels, net.head.out_channels, net.head.kernel_size) == (32, 3, (1, 1, 1))


def test_pam_placement_and_vnet_reductions():
    net = AttentionVNet(3, 1, 2, features=TINY, patch_size=(16, 16, 32))
    pams = [stage.attention for stage in (*net.encoder[:-1], *net.decoder)]
    assert all(isinstance(p, ProgressiveAttention) for p in pams) and len(pams) == 8
    assert [p.slice_attention.num_slices for p in pams] == [32, 16, 8, 4, 4, 8, 16, 32]
    assert [p.slice_attention.channels for p in pams] == [4, 8, 8, 16, 32, 16, 16, 8]
    # r_D = 8 (clamped at depth 4), r_C = 4
    assert [p.slice_attention.hidden for p in pams[:4]] == [4, 2, 1, 1]
    assert pams[3].channel_attention.fc[0].out_features == 4
    bottleneck = net.encoder[-1].attention
    assert isinstance(bottleneck, ChannelSELayer) and bottleneck.fc[0].out_features == 4
    custom = AttentionVNet(3, 1, 2, features=TINY, patch_size=(16, 16, 32),
                           attention_kwargs={"slice_reduction": 2, "channel_reduction": 2})
    assert custom.encoder[0].attention.slice_attention.hidden == 16
    assert custom.encoder[-1].attention.fc[0].out_features == 8


def test_other_attention_placements():
    cbam = AttentionVNet(3, 1, 2, features=TINY, attention="cbam")
    assert sum(isinstance(m, ConvBlockAttention) for m in cbam.modules()) == 9  # 4 + bottleneck + 4
    scse = AttentionVNet(3, 1, 2, features=TINY, attention="scse", patch_size=(16, 16, 16))
    assert isinstance(scse.encoder[-1].attention, ChannelSELayer)
    ag = AttentionVNet(3, 1, 2, features=TINY, attention="ag")
    gates = [stage.gate for stage in ag.decoder]
    assert all(isinstance(g, AttentionGate) for g in gates)
    assert [(g.skip_channels, g.gate_channels) for g in gates] == [(16, 16), (8, 32), (8, 16), (4, 16)]
    assert all(isinstance(stage.attention, nn.Identity) for stage in (*ag.encoder, *ag.decoder))
    plain = AttentionVNet(3, 1, 2, features=TINY, attention="none")
    n_gates = sum(p.numel() for g in gates for p in g.parameters())
    assert sum(p.numel() for p in ag.parameters()) == sum(p.numel() for p in plain.parameters()) + n_gates


@pytest.mark.parametrize("attention", ["none", "pam", "ag"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_and_torchscript(attention, spatial_dims):
    torch.manual_seed(0)
    patch = (32, 16, 16)[:spatial_dims]
    net = AttentionVNet(spatial_dims, 2, 3, features=(4, 8, 16), attention=attention, patch_size=patch,
                        norm=("instance", {"affine": True}), kernel_size=3)
    x = torch.randn(2, 2, *patch)
    out = net(x)
    assert out.shape == (2, 3, *patch)
    net.eval()
    torch.testing.assert_close(torch.jit.script(net)(x), net(x), atol=1e-5, rtol=1e-4)


def test_input_checks():
    net = AttentionVNet(3, 1, 2, features=(4, 8, 16), attention="pam", patch_size=(16, 16, 8))
    with pytest.raises(ValueError, match=r"divisible by 4.*\[1, 1, 16, 18, 8\]"):
        net(torch.randn(1, 1, 16, 18, 8))
    with pytest.raises(ValueError, match=r"patch_size=\(16, 16, 8\).*depth 16"):
        net(torch.randn(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match=r"5 dims"):
        net(torch.randn(1, 1, 16, 16))
    assert net(torch.randn(1, 1, 8, 12, 8)).shape == (1, 2, 8, 12, 8)  # in-plane sizes are free


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attention": "pam"}, r"pass patch_size"),
        ({"attention": "csse", "patch_size": (16, 16, 24)}, r"divisible by 16.*\(16, 16, 24\)"),
        ({"attention": "none", "patch_size": (16, 16)}, r"3 entries"),
        ({"attention": "nonlocal"}, r"unknown attention block 'nonlocal'"),
        ({"spatial_dims": 1}, r"spatial_dims=1"),
        ({"features": (16,)}, r"features=\(16,\)"),
        ({"features": (4, 8), "num_convs": (1, 2, 3)}, r"num_convs=\(1, 2, 3\)"),
        ({"kernel_size": 4}, r"kernel_size=4"),
        ({"dropout": 1.0}, r"dropout=1.0"),
        ({"attention": "ag", "attention_kwargs": {"pool": "max"}}, r"\['pool'\].*'ag'"),
    ],
)
def test_argument_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionVNet(**kwargs)


def test_bundle_entry_point_and_options():
    net = build_segmentation_network("vnet", spatial_dims=3, in_channels=4, out_channels=3, features=(4, 8, 16),
                                     attention="se", num_convs=(1, 1, 2), dropout=0.1, act="relu")
    assert isinstance(net, AttentionVNet) and [len(s.convs.convs) for s in net.encoder] == [1, 1, 2]
    assert any(isinstance(m, nn.Dropout) for m in net.modules()) and any(isinstance(m, nn.ReLU) for m in net.modules())
    assert net(torch.randn(2, 4, 8, 8, 8)).shape == (2, 3, 8, 8, 8)
