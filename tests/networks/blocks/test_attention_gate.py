"""Attention gate (Oktay et al.) against a loop reference, and its use on AttentionUNet's skips."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from networks.blocks.attention import get_attention_block
from networks.blocks.attention_gate import (
    AttentionGate,
    SkipPassThrough,
    get_skip_gate,
    is_skip_gate,
)
from networks.nets.unet import AttentionUNet

# (spatial_dims, skip shape, gate shape)
GATE_CASES = [
    (3, (2, 6, 8, 6, 4), (2, 10, 4, 3, 2)),
    (3, (1, 4, 7, 5, 6), (1, 8, 3, 2, 3)),  # odd skip sizes: theta is floor(size / 2), like max-pooling
    (2, (2, 6, 8, 10), (2, 10, 4, 5)),
    (2, (1, 3, 9, 6), (1, 5, 4, 3)),
]


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_gate(gate: AttentionGate, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """theta as an explicit sum over the 2**n offsets of the stride-2 k2 kernel; 1x1 convs as einsums."""
    n_spatial = x.ndim - 2
    coarse = [s // 2 for s in x.shape[2:]]
    theta = torch.zeros(x.shape[0], gate.inter_channels, *coarse)
    for offset in itertools.product(range(2), repeat=n_spatial):
        taps = x[(slice(None), slice(None), *(slice(o, o + 2 * c, 2) for o, c in zip(offset, coarse)))]
        theta += torch.einsum("oi,bi...->bo...", gate.theta.weight[(slice(None), slice(None), *offset)], taps)
    phi = torch.einsum("oi,bi...->bo...", gate.phi.weight.flatten(1), g)
    phi = phi + gate.phi.bias.view(1, -1, *([1] * n_spatial))
    f = torch.relu(theta + phi)
    psi = torch.einsum("oi,bi...->bo...", gate.psi.weight.flatten(1), f) + gate.psi.bias.view(1, -1, *([1] * n_spatial))
    alpha = torch.sigmoid(psi)
    mode = "bilinear" if n_spatial == 2 else "trilinear"
    alpha = F.interpolate(alpha, size=x.shape[2:], mode=mode, align_corners=False)
    out = torch.empty_like(x)
    for c in range(x.shape[1]):  # one coefficient map for every channel of the skip
        out[:, c] = x[:, c] * alpha[:, 0]
    return out


@pytest.mark.parametrize("spatial_dims, skip_shape, gate_shape", GATE_CASES)
def test_gate_matches_reference(spatial_dims, skip_shape, gate_shape):
    torch.manual_seed(0)
    gate = get_skip_gate("ag", spatial_dims, skip_shape[1], gate_shape[1])
    assert isinstance(gate, AttentionGate) and gate.inter_channels == max(1, skip_shape[1] // 2)
    assert gate.theta.bias is None and gate.theta.stride == (2,) * spatial_dims
    x, g = torch.randn(*skip_shape), torch.randn(*gate_shape)
    out = gate(x, g)
    torch.testing.assert_close(out, reference_gate(gate, x, g), atol=1e-5, rtol=1e-4)
    alpha = gate.coefficients(x, g)
    assert alpha.shape == (skip_shape[0], 1, *skip_shape[2:]) and 0 < alpha.min() and alpha.max() < 1


def test_gate_interpolates_a_mismatched_gate_and_checks_inputs():
    gate = AttentionGate(3, 4, 8, inter_channels=3)
    x = torch.randn(1, 4, 8, 8, 8)
    assert gate(x, torch.randn(1, 8, 3, 5, 4)).shape == x.shape
    with pytest.raises(ValueError, match=r"skip \(B, 4.*\[1, 5, 8, 8, 8\]"):
        gate(torch.randn(1, 5, 8, 8, 8), torch.randn(1, 8, 4, 4, 4))
    with pytest.raises(ValueError, match=r"gate \(B=1, 8.*\[1, 8, 4, 4\]"):
        gate(x, torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"inter_channels=0"):
        AttentionGate(3, 4, 8, inter_channels=0)
    with pytest.raises(ValueError, match=r"\['pool'\].*'ag'"):
        get_skip_gate("ag", 3, 4, 8, pool="max")


def test_registry_entry_and_helpers():
    assert is_skip_gate("ag") and is_skip_gate("AG") and not is_skip_gate("pam")
    assert isinstance(get_skip_gate("se", 3, 4, 8, r=2), SkipPassThrough)  # other blocks' options are theirs
    assert isinstance(get_attention_block("ag", 3, 16, inter_channels=4), nn.Identity)
    with pytest.raises(ValueError, match=r"unknown attention block 'agx'"):
        is_skip_gate("agx")
    x = torch.randn(1, 2, 4, 4)
    assert SkipPassThrough()(x, torch.randn(1, 3, 2, 2)) is x


def test_gate_torchscript_and_gradients():
    torch.manual_seed(1)
    gate = AttentionGate(2, 4, 6)
    x, g = torch.randn(2, 4, 8, 6, requires_grad=True), torch.randn(2, 6, 4, 3, requires_grad=True)
    gate(x, g).sum().backward()
    assert x.grad is not None and g.grad is not None and all(p.grad is not None for p in gate.parameters())
    torch.testing.assert_close(torch.jit.script(gate)(x, g), gate(x, g))


def test_unet_with_ag_gates_the_skips_only():
    torch.manual_seed(2)
    net = AttentionUNet(3, 2, 3, features=(4, 8, 8, 16), attention="ag", attention_kwargs={"inter_channels": 3})
    gates = [m for m in net.modules() if isinstance(m, AttentionGate)]
    assert len(gates) == 3  # one per decoder level
    assert all(isinstance(level.attention, nn.Identity) for level in (*net.encoder, *net.decoder))
    # decoder level i: skip = features[i], gate = the deeper feature
    assert [(lvl.gate.skip_channels, lvl.gate.gate_channels, lvl.gate.inter_channels) for lvl in net.decoder] == [
        (8, 16, 3), (8, 8, 3), (4, 8, 3)
    ]
    plain = AttentionUNet(3, 2, 3, features=(4, 8, 8, 16), attention="none")
    n_gate = sum(p.numel() for g in gates for p in g.parameters())
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters()) + n_gate
    assert all(isinstance(level.gate, SkipPassThrough) for level in plain.decoder)

    # the first decoder level multiplies its skip by the gate's coefficients before concatenating
    x = torch.randn(1, 2, 13, 16, 10)
    skips = []
    h = x
    for level in net.encoder:
        h = level(h)
        skips.append(h)
    expected_skip = net.decoder[0].gate(skips[-2], skips[-1])
    seen = {}
    hook = net.decoder[0].convs.register_forward_pre_hook(lambda m, args: seen.setdefault("cat", args[0]))
    out = net(x)
    hook.remove()
    assert out.shape == (1, 3, 13, 16, 10)
    torch.testing.assert_close(seen["cat"][:, :8], expected_skip)
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet_with_ag_torchscript(spatial_dims):
    torch.manual_seed(3)
    net = AttentionUNet(spatial_dims, 1, 2, features=(4, 8, 16), attention="ag").eval()
    x = torch.randn(2, 1, *(16, 12, 8)[:spatial_dims])
    torch.testing.assert_close(torch.jit.script(net)(x), net(x), atol=1e-5, rtol=1e-4)
