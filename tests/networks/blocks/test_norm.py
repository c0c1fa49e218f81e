"""LayoutPreservingInstanceNorm against nn.InstanceNorm, and replace_instance_norms."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from networks.blocks.norm import LayoutPreservingInstanceNorm, replace_instance_norms

NORMS = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
LAYOUTS = {2: torch.channels_last, 3: torch.channels_last_3d}
# spatial_dims, affine, track_running_stats, batch
CASES = [(d, a, t, b) for d in (2, 3) for a in (False, True) for t in (False, True) for b in (1, 3)]


def _norm(spatial_dims: int, affine: bool, track: bool) -> nn.Module:
    torch.manual_seed(0)
    norm = NORMS[spatial_dims](5, affine=affine, track_running_stats=track)
    with torch.no_grad():
        if affine:
            norm.weight.uniform_(0.5, 2.0)
            norm.bias.uniform_(-1.0, 1.0)
        if track:
            norm.running_mean.uniform_(-1.0, 1.0)
            norm.running_var.uniform_(0.5, 2.0)
    return norm


@pytest.mark.parametrize("spatial_dims,affine,track,batch", CASES)
def test_matches_instance_norm_in_both_layouts_and_keeps_channels_last(spatial_dims, affine, track, batch):
    norm = _norm(spatial_dims, affine, track).eval()
    ours = LayoutPreservingInstanceNorm.from_instance_norm(copy.deepcopy(norm))
    x = torch.randn(batch, 5, *([6, 7, 4][:spatial_dims])) * 3.0 + 1.5
    x_cl = x.contiguous(memory_format=LAYOUTS[spatial_dims])
    expected = norm(x)
    with torch.no_grad():
        out_cl, out = ours(x_cl), ours(x)
    torch.testing.assert_close(out_cl, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out_cl.is_contiguous(memory_format=LAYOUTS[spatial_dims]) and not out_cl.is_contiguous()
    if not track:  # instance statistics: every (sample, channel) has mean bias and std weight
        flat = out_cl.float().flatten(2)
        scale = norm.weight.detach() if affine else torch.ones(5)
        shift = norm.bias.detach() if affine else torch.zeros(5)
        torch.testing.assert_close(flat.mean(-1), shift.expand(batch, 5), atol=1e-5, rtol=0)
        torch.testing.assert_close(flat.std(-1, unbiased=False), scale.expand(batch, 5), atol=1e-3, rtol=1e-3)


def test_bfloat16_channels_last_is_close_to_float32():
    norm = _norm(3, True, False).eval()
    ours = LayoutPreservingInstanceNorm.from_instance_norm(copy.deepcopy(norm)).to(torch.bfloat16)
    x = torch.randn(2, 5, 8, 8, 6) * 2.0 - 1.0
    x_bf16 = x.to(torch.bfloat16)
    with torch.no_grad():
        out = ours(x_bf16.contiguous(memory_format=torch.channels_last_3d))
        torch_bf16 = copy.deepcopy(norm).to(torch.bfloat16)(x_bf16)  # PyTorch's own bfloat16 instance norm
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last_3d)
    # within a few bfloat16 steps (2**-8 relative) of PyTorch's bfloat16 result and of float32
    torch.testing.assert_close(out.float(), torch_bf16.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(out.float(), norm(x), atol=2e-2, rtol=2e-2)


def test_training_mode_updates_running_stats_like_the_original():
    norm = _norm(3, True, True).train()
    ours = LayoutPreservingInstanceNorm.from_instance_norm(copy.deepcopy(norm))
    assert ours.training
    x = torch.randn(2, 5, 4, 4, 4) + 2.0
    torch.testing.assert_close(ours(x.contiguous(memory_format=torch.channels_last_3d)), norm(x))
    torch.testing.assert_close(ours.running_mean, norm.running_mean)
    torch.testing.assert_close(ours.running_var, norm.running_var)


@pytest.mark.parametrize("spatial_dims,affine,batch", [(d, a, b) for d in (2, 3) for a in (False, True) for b in (1, 3)])
def test_training_without_running_stats_keeps_channels_last_with_the_same_gradients(spatial_dims, affine, batch):
    norm = _norm(spatial_dims, affine, False).train()
    ours = LayoutPreservingInstanceNorm.from_instance_norm(copy.deepcopy(norm))
    x = torch.randn(batch, 5, *([6, 7, 4][:spatial_dims])) * 3.0 + 1.5
    upstream = torch.randn_like(x)
    x_ref = x.clone().requires_grad_(True)
    x_cl = x.contiguous(memory_format=LAYOUTS[spatial_dims]).requires_grad_(True)
    expected, out = norm(x_ref), ours(x_cl)
    assert out.is_contiguous(memory_format=LAYOUTS[spatial_dims]) and not out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    (expected * upstream).sum().backward()
    (out * upstream).sum().backward()
    torch.testing.assert_close(x_cl.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    if affine:
        torch.testing.assert_close(ours.weight.grad, norm.weight.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.bias.grad, norm.bias.grad, atol=1e-4, rtol=1e-4)


def test_shares_parameters_and_state_dict_names():
    norm = _norm(2, True, True)
    ours = LayoutPreservingInstanceNorm.from_instance_norm(norm)
    assert ours.weight is norm.weight and ours.bias is norm.bias and ours.running_var is norm.running_var
    assert list(ours.state_dict()) == list(norm.state_dict())
    plain = LayoutPreservingInstanceNorm.from_instance_norm(nn.InstanceNorm3d(4))
    assert plain.weight is None and list(plain.state_dict()) == []
    assert "affine=False" in repr(plain)


def test_replace_instance_norms_counts_and_keeps_outputs():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv3d(2, 4, 3, padding=1), nn.InstanceNorm3d(4, affine=True), nn.PReLU(),
        nn.Sequential(nn.Conv3d(4, 4, 3, padding=1), nn.InstanceNorm3d(4)), nn.BatchNorm3d(4),
    ).eval()
    swapped = copy.deepcopy(net)
    assert replace_instance_norms(swapped) == 2
    assert isinstance(swapped[1], LayoutPreservingInstanceNorm)
    assert isinstance(swapped[3][1], LayoutPreservingInstanceNorm)
    assert isinstance(swapped[4], nn.BatchNorm3d)
    swapped.load_state_dict(net.state_dict())  # same names
    x = torch.randn(1, 2, 6, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(swapped(x.contiguous(memory_format=torch.channels_last_3d)), net(x),
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(TypeError, match="inside a module"):
        replace_instance_norms(nn.InstanceNorm2d(3))


def test_errors_name_the_problem():
    ours = LayoutPreservingInstanceNorm(4)
    with pytest.raises(ValueError, match=r"\(B, 4, \*spatial\).*\[1, 3, 5, 5\]"):
        ours(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="num_features must be positive"):
        LayoutPreservingInstanceNorm(0)
