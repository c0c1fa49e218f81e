"""scA, csA, Project & Excitation and CBAM against slow references written with loops and plain ops."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer

from networks.blocks.attention import attention_needs_slices, get_attention_block
from networks.blocks.pam import SliceAttention
from networks.blocks.zoo import (
    ChannelSliceAttention,
    ConvBlockAttention,
    ProjectExcite,
    SliceChannelAttention,
)

# (spatial_dims, input shape, slice_axis)
SLICE_CASES = [(3, (2, 6, 5, 4, 8), -1), (3, (2, 6, 8, 5, 4), 0), (2, (2, 6, 7, 8), -1), (2, (1, 6, 8, 5), 0)]
SHAPES = [(3, (2, 6, 5, 4, 7)), (2, (2, 6, 9, 7))]


pytestmark = pytest.mark.usefixtures("one_thread")


def _moved(x: torch.Tensor, slice_axis: int) -> torch.Tensor:
    """The slice axis moved to dim 2, the paper's (B, C, D, ...) layout."""
    return torch.movedim(x, 2 + slice_axis % (x.ndim - 2), 2)


def reference_slice_attention(sa: SliceAttention, x: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel, per-slice loops with the channel's own MLP (average pooling)."""
    xm = _moved(x, sa.slice_axis)
    out = torch.empty_like(xm)
    for b in range(xm.shape[0]):
        for c in range(xm.shape[1]):
            v = torch.stack([xm[b, c, d].mean() for d in range(xm.shape[2])])
            h = torch.relu(v @ sa.weight1[c] + sa.bias1[c])
            s = torch.sigmoid(h @ sa.weight2[c] + sa.bias2[c])
            for d in range(xm.shape[2]):
                out[b, c, d] = xm[b, c, d] * s[d]
    return torch.movedim(out, 2, 2 + sa.slice_axis % (x.ndim - 2))


def reference_se(se: ChannelSELayer, x: torch.Tensor) -> torch.Tensor:
    first, second = se.fc[0], se.fc[2]
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        z = torch.stack([x[b, c].mean() for c in range(x.shape[1])])
        w = torch.sigmoid(second.weight @ torch.relu(first.weight @ z + first.bias) + second.bias)
        for c in range(x.shape[1]):
            out[b, c] = x[b, c] * w[c]
    return out


@pytest.mark.parametrize("spatial_dims, shape, slice_axis", SLICE_CASES)
def test_scse_and_csse_match_reference(spatial_dims, shape, slice_axis):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    depth = shape[2 + slice_axis % spatial_dims]
    for name, cls in (("scse", SliceChannelAttention), ("csse", ChannelSliceAttention)):
        block = get_attention_block(
            name, spatial_dims, shape[1], num_slices=depth, slice_axis=slice_axis, slice_reduction=2,
            channel_reduction=2,
        )
        assert type(block) is cls and attention_needs_slices(name)
        sa, se = block.slice_attention, block.channel_se
        assert sa.hidden == max(1, depth // 2) and se.fc[0].out_features == 3
        if name == "scse":
            expected = reference_se(se, reference_slice_attention(sa, x))
        else:
            expected = reference_slice_attention(sa, reference_se(se, x))
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-4)


def test_scse_clamps_and_checks_depth():
    block = SliceChannelAttention(3, 4, num_slices=4)  # r_D = 16 clamped to 4, r_C = 8 clamped to 4
    assert block.slice_attention.hidden == 1 and block.channel_se.fc[0].out_features == 1
    with pytest.raises(ValueError, match=r"num_slices=4.*depth 6"):
        block(torch.randn(1, 4, 5, 5, 6))
    with pytest.raises(ValueError, match=r"'csse'.*num_slices"):
        get_attention_block("csse", 3, 4)
    with pytest.raises(ValueError, match=r"channel_reduction=0"):
        ChannelSliceAttention(3, 4, 4, channel_reduction=0)


def reference_pe(pe: ProjectExcite, x: torch.Tensor) -> torch.Tensor:
    """Explicit per-axis projections (loops over the positions of each axis), 1x1 convs as matmuls."""
    n_spatial = x.ndim - 2
    sizes = x.shape[2:]
    z = torch.zeros_like(x)
    for axis in range(n_spatial):
        for i in range(sizes[axis]):
            index = [slice(None)] * x.ndim
            index[2 + axis] = i
            plane = x[tuple(index)]  # (B, C, other spatial)
            value = plane.reshape(x.shape[0], x.shape[1], -1).mean(-1)  # (B, C)
            z[tuple(index)] += value.view(x.shape[0], x.shape[1], *([1] * (n_spatial - 1)))
    conv1, act, conv2 = pe.excite[0], pe.excite[1], pe.excite[2]
    w1 = conv1.weight.reshape(conv1.out_channels, -1)
    w2 = conv2.weight.reshape(conv2.out_channels, -1)
    flat = z.reshape(x.shape[0], x.shape[1], -1)  # (B, C, N)
    hidden = act(torch.einsum("hc,bcn->bhn", w1, flat) + conv1.bias[None, :, None])
    a = torch.sigmoid(torch.einsum("ch,bhn->bcn", w2, hidden) + conv2.bias[None, :, None])
    return x * a.reshape(x.shape)


@pytest.mark.parametrize("spatial_dims, shape", SHAPES)
@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_pe_matches_reference(spatial_dims, shape, act):
    torch.manual_seed(1)
    block = get_attention_block("pe", spatial_dims, shape[1], act=act)
    assert isinstance(block, ProjectExcite) and not attention_needs_slices("pe")
    assert block.excite[0].out_channels == shape[1] // 2
    assert isinstance(block.excite[1], nn.PReLU if act == "prelu" else nn.ReLU)
    x = torch.randn(*shape)
    torch.testing.assert_close(block(x), reference_pe(block, x), atol=1e-5, rtol=1e-4)


def _conv_by_offsets(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """'Same' convolution as an explicit sum over kernel offsets of shifted, zero-padded inputs."""
    k = weight.shape[-1]
    pad = k // 2
    n_spatial = x.ndim - 2
    padded = nn.functional.pad(x, [pad] * (2 * n_spatial))
    out = torch.zeros(x.shape[0], weight.shape[0], *x.shape[2:])
    for offset in itertools.product(range(k), repeat=n_spatial):
        window = padded[(slice(None), slice(None), *(slice(o, o + s) for o, s in zip(offset, x.shape[2:])))]
        out += torch.einsum("oi,bi...->bo...", weight[(slice(None), slice(None), *offset)], window)
    if bias is not None:
        out += bias.view(1, -1, *([1] * n_spatial))
    return out


def reference_cbam(block: ConvBlockAttention, x: torch.Tensor) -> torch.Tensor:
    mlp = block.cam.mlp
    out = torch.empty_like(x)
    for b in range(x.shape[0]):
        avg = torch.stack([x[b, c].mean() for c in range(x.shape[1])])
        mx = torch.stack([x[b, c].max() for c in range(x.shape[1])])
        w = torch.sigmoid(mlp(avg) + mlp(mx))  # the same MLP for both descriptors
        for c in range(x.shape[1]):
            out[b, c] = x[b, c] * w[c]
    pooled = torch.stack([out.max(dim=1).values, out.mean(dim=1)], dim=1)
    for layer in block.sam.convs:  # conv by offsets, then the norm / activation layers as they are
        is_conv = isinstance(layer, (nn.Conv2d, nn.Conv3d))
        pooled = _conv_by_offsets(pooled, layer.weight, layer.bias) if is_conv else layer(pooled)
    return out * torch.sigmoid(pooled)


@pytest.mark.parametrize("spatial_dims, shape", SHAPES)
@pytest.mark.parametrize("kernel_size", [7, 3])
def test_cbam_matches_reference(spatial_dims, shape, kernel_size):
    torch.manual_seed(2)
    block = get_attention_block("cbam", spatial_dims, shape[1], kernel_size=kernel_size, reduction=2)
    assert isinstance(block, ConvBlockAttention) and block.cam.mlp[0].out_features == 3
    x = torch.randn(*shape)
    torch.testing.assert_close(block(x), reference_cbam(block, x), atol=1e-5, rtol=1e-4)


def test_cbam_spatial_sigmoid_is_of_the_conv_output():
    # the original CBAM-3D took the sigmoid of the gate's input: with a zero conv and bias b the gate
    # must be sigmoid(b) everywhere, whatever the input
    block = ConvBlockAttention(3, 4, reduction=16)
    assert block.cam.mlp[0].out_features == 1  # r = 16 clamped for 4 channels
    with torch.no_grad():
        block.sam.convs[0].weight.zero_()
        block.sam.convs[0].bias.fill_(0.5)
    x = torch.randn(2, 4, 5, 6, 7)
    torch.testing.assert_close(block.sam(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_cbam_options_and_checks():
    block = get_attention_block("cbam", 2, 32, spatial_norm="batch")
    conv, norm = block.sam.convs
    assert isinstance(norm, nn.BatchNorm2d) and conv.bias is None
    assert conv.kernel_size == (7, 7) and block.cam.mlp[0].out_features == 2
    block.eval()
    x = torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(block(x), reference_cbam(block, x), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"kernel_size=4"):
        ConvBlockAttention(3, 8, kernel_size=4)
    with pytest.raises(ValueError, match=r"'cbam'"):
        get_attention_block("cbam", 2, 8, slice_reduction=4)


def test_cbam_spatial_stack_and_switches():
    """LA-Net's spatial gate (three 3x3 convs 2 -> 8 -> 8 -> 1 with batch norm, ReLU between) and the gate switches."""
    torch.manual_seed(3)
    block = ConvBlockAttention(2, 8, kernel_size=3, spatial_norm="batch", spatial_convs=3, spatial_hidden=8).eval()
    kinds = [type(m).__name__ for m in block.sam.convs]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d"]
    x = torch.randn(2, 8, 6, 5)
    torch.testing.assert_close(block(x), reference_cbam(block, x), atol=1e-5, rtol=1e-4)
    assert isinstance(ConvBlockAttention(2, 8, use_cam=False).cam, nn.Identity)
    no_sam = ConvBlockAttention(2, 8, use_sam=False)
    assert isinstance(no_sam.sam, nn.Identity)
    torch.testing.assert_close(no_sam(x), no_sam.cam(x))
    with pytest.raises(ValueError, match=r"spatial_dims=1"):
        ConvBlockAttention(1, 8)
    with pytest.raises(ValueError, match=r"\[2, 8, 4, 4\]"):
        ConvBlockAttention(3, 8)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"reduction=0"):
        ProjectExcite(3, 8, reduction=0)
    with pytest.raises(ValueError, match=r"ProjectExcite expects input \(B, 8"):
        ProjectExcite(2, 8)(torch.randn(1, 4, 5, 5))


@pytest.mark.parametrize("name", ["scse", "csse", "pe", "cbam"])
@pytest.mark.parametrize("spatial_dims, shape", SHAPES)
def test_torchscript_and_gradients(name, spatial_dims, shape):
    torch.manual_seed(3)
    block = get_attention_block(name, spatial_dims, shape[1], num_slices=shape[-1])
    x = torch.randn(*shape, requires_grad=True)
    block(x).square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())
    scripted = torch.jit.script(block)
    torch.testing.assert_close(scripted(x), block(x))


def test_package_reexports():
    import networks

    for name in ("SliceChannelAttention", "ChannelSliceAttention", "ProjectExcite", "ConvBlockAttention"):
        assert hasattr(networks, name) and name in networks.__all__
