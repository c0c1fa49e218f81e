"""AttentionUNet: shapes, structure, parameter count, scripting, depth checks and an overfit sanity run."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer

from networks.blocks.pam import ProgressiveAttention
from networks.nets.unet import AttentionUNet

TINY = (4, 8, 8, 16)

SHAPE_CASES_3D = [
    ("none", (2, 2, 16, 16, 8), None),
    ("se", (2, 2, 16, 16, 8), None),
    ("pam", (2, 2, 16, 16, 8), (16, 16, 8)),
    ("none", (1, 2, 13, 18, 10), None),  # odd sizes: decoder interpolates to the skip's size
    ("pam", (1, 2, 13, 18, 16), (13, 18, 16)),  # pam only needs the slice depth divisible by 8
]
SHAPE_CASES_2D = [
    ("none", (2, 2, 32, 24), None),
    ("se", (2, 2, 32, 24), None),
    ("pam", (2, 2, 32, 24), (32, 24)),
    ("se", (1, 2, 21, 15), None),
]


@pytest.mark.parametrize("attention, shape, patch_size", SHAPE_CASES_3D)
def test_output_shape_3d(attention, shape, patch_size):
    net = AttentionUNet(3, in_channels=2, out_channels=3, features=TINY, attention=attention, patch_size=patch_size)
    out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 3, *shape[2:])


@pytest.mark.parametrize("attention, shape, patch_size", SHAPE_CASES_2D)
def test_output_shape_2d(attention, shape, patch_size):
    net = AttentionUNet(2, in_channels=2, out_channels=3, features=TINY, attention=attention, patch_size=patch_size)
    assert net.decoder[0].mode == "bilinear"
    out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 3, *shape[2:])


def test_default_has_seven_attention_blocks_sized_per_level():
    net = AttentionUNet(patch_size=(48, 48, 32))
    blocks = [m for m in net.modules() if isinstance(m, ProgressiveAttention)]
    assert len(blocks) == 7
    # encoder levels 0..3 then decoder levels 2..0
    depths = [level.attention.slice_attention.num_slices for level in (*net.encoder, *net.decoder)]
    channels = [level.attention.slice_attention.channels for level in (*net.encoder, *net.decoder)]
    assert depths == [32, 16, 8, 4, 8, 16, 32]
    assert channels == [16, 32, 64, 128, 64, 32, 16]
    # r_D = 16 clamped at the depth-4 and depth-8 levels so D // r_D >= 1
    assert [level.attention.slice_attention.hidden for level in net.encoder] == [2, 1, 1, 1]
    assert sum(isinstance(m, ChannelSELayer) for m in AttentionUNet(attention="se").modules()) == 7
    plain = AttentionUNet(attention="none")
    assert not any(isinstance(m, (ChannelSELayer, ProgressiveAttention)) for m in plain.modules())
    short = AttentionUNet(features=(8, 16, 32), patch_size=(16, 16, 12))
    assert sum(isinstance(m, ProgressiveAttention) for m in short.modules()) == 5


def test_conv_unit_order_and_widths():
    net = AttentionUNet(attention="none")
    unit = net.encoder[0].convs.conv_0
    assert [type(m) for m in unit.adn.children()] == [nn.PReLU, nn.InstanceNorm3d]  # conv -> act -> norm
    assert unit.adn.N.affine and unit.conv.bias is not None
    widths = [
        (lvl.convs.conv_0.conv.in_channels, lvl.convs.conv_0.conv.out_channels, lvl.convs.conv_1.conv.out_channels)
        for lvl in (*net.encoder, *net.decoder)
    ]
    assert widths == [(4, 8, 16), (16, 16, 32), (32, 32, 64), (64, 64, 128), (192, 64, 64), (96, 32, 32), (48, 16, 16)]
    assert isinstance(net.encoder[0].down, nn.Identity)
    assert all(isinstance(lvl.down, nn.MaxPool3d) and lvl.down.kernel_size == 2 for lvl in net.encoder[1:])
    assert (net.head.in_channels, net.head.out_channels, net.head.kernel_size) == (16, 3, (1, 1, 1))


def test_parameter_count_matches_layer_formula():
    def unit(c_in, c_out, k=3):
        # conv3d k^3 weights + bias, PReLU (1 parameter), affine instance norm (weight + bias)
        return k**3 * c_in * c_out + c_out + 1 + 2 * c_out

    f, c_in, c_out = (16, 32, 64, 128), 4, 3
    expected = 0
    prev = c_in
    for out in f:  # encoder: prev -> max(out // 2, prev) -> out
        mid = max(out // 2, prev)
        expected += unit(prev, mid) + unit(mid, out)
        prev = out
    for level in (2, 1, 0):  # decoder: [skip, up] -> out -> out
        expected += unit(f[level] + f[level + 1], f[level]) + unit(f[level], f[level])
    expected += f[0] * c_out + c_out  # 1x1 head
    assert expected == 1_022_201
    net = AttentionUNet(in_channels=c_in, out_channels=c_out, features=f, attention="none")
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("attention", ["none", "se", "pam"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_torchscript(attention, spatial_dims):
    torch.manual_seed(0)
    patch = (16, 16, 8)[:spatial_dims] if spatial_dims == 3 else (16, 8)
    net = AttentionUNet(spatial_dims, 2, 2, features=TINY, attention=attention, patch_size=patch).eval()
    x = torch.randn(2, 2, *patch)
    scripted = torch.jit.script(net)
    torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-4)


def test_depth_mismatch_raises_at_network_level():
    net = AttentionUNet(3, 1, 2, features=TINY, attention="pam", patch_size=(16, 16, 8))
    with pytest.raises(ValueError) as err:
        net(torch.randn(1, 1, 16, 16, 16))
    message = str(err.value)
    assert "patch_size=(16, 16, 8)" in message and "depth 16" in message and "[1, 1, 16, 16, 16]" in message
    # other in-plane sizes are fine: only the slice depth is fixed
    assert net(torch.randn(1, 1, 24, 8, 8)).shape == (1, 2, 24, 8, 8)
    # a block deeper in the net names its own expectation
    with pytest.raises(ValueError, match=r"num_slices=4 along slice axis -1 but got depth 8"):
        net.encoder[1](torch.randn(1, 4, 16, 16, 16))


def test_slice_axis_zero():
    net = AttentionUNet(3, 1, 2, features=TINY, attention="pam", patch_size=(8, 16, 16), slice_axis=0)
    assert net.encoder[0].attention.slice_attention.num_slices == 8
    assert net(torch.randn(1, 1, 8, 16, 16)).shape == (1, 2, 8, 16, 16)
    with pytest.raises(ValueError, match=r"depth 16"):
        net(torch.randn(1, 1, 16, 16, 16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attention": "pam"}, r"pass patch_size"),
        ({"attention": "pam", "patch_size": (16, 16, 12)}, r"divisible by 8.*\(16, 16, 12\)"),
        ({"attention": "none", "patch_size": (16, 16)}, r"3 entries"),
        ({"attention": "transformer"}, r"unknown attention block 'transformer'"),
        ({"spatial_dims": 1}, r"spatial_dims=1"),
        ({"features": (16,)}, r"features=\(16,\)"),
        ({"upsample": "deconv"}, r"upsample='deconv'"),
        ({"slice_axis": 3}, r"slice_axis=3"),
        ({"attention": "se", "attention_kwargs": {"pool": "max"}}, r"\['pool'\].*'se'"),
    ],
)
def test_argument_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionUNet(**kwargs)


def test_attention_kwargs_and_dropout():
    net = AttentionUNet(3, 1, 2, features=TINY, attention="pam", patch_size=(16, 16, 16),
                        attention_kwargs={"slice_reduction": 4, "channel_reduction": 2, "pool": "avgmax"}, dropout=0.1)
    sa = net.encoder[0].attention.slice_attention
    assert (sa.hidden, sa.pool) == (4, "avgmax")
    assert any(isinstance(m, nn.Dropout) for m in net.modules())


def _dice(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (2 * (prob * target).sum() + 1e-6) / (prob.sum() + target.sum() + 1e-6)


def test_overfit_bright_cube_with_pam():
    # about 3 s on 2 CPU cores; no wall-clock assertion, the machine is shared
    torch.manual_seed(0)
    target = torch.zeros(2, 1, 16, 16, 16)
    target[0, :, 3:9, 4:10, 5:11] = 1.0
    target[1, :, 8:14, 2:8, 7:13] = 1.0
    image = 0.3 * torch.randn(2, 1, 16, 16, 16) + target
    net = AttentionUNet(3, 1, 1, features=(4, 8, 8, 16), attention="pam", patch_size=(16, 16, 16))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        logits = net(image)
        prob = torch.sigmoid(logits)
        loss = 1 - _dice(prob, target) + nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        dice = _dice((torch.sigmoid(net(image)) > 0.5).float(), target).item()
    assert dice > 0.8, dice
