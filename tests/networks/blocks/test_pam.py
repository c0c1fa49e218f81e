"""PAM (slice attention, key-slice selection, channel attention) against a slow loop reference."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from networks.blocks.pam import (
    ChannelAttention,
    ProgressiveAttention,
    SliceAttention,
    key_slice_mask,
    pool_over,
)

POOLS = ["avg", "max", "avgmax"]
SLICE_AXES = [0, -1]


# ---------------------------------------------------------------------------------------------
# slow, obviously-correct reference in the paper's layout (B, C, D, H, W)
# ---------------------------------------------------------------------------------------------


def channel_mlps(sa: SliceAttention) -> list[nn.Sequential]:
    """One ``Linear(D, Dr), ReLU, Linear(Dr, D)`` per channel, weights copied from the vectorised module."""
    mlps = []
    for c in range(sa.channels):
        first = nn.Linear(sa.num_slices, sa.hidden)
        second = nn.Linear(sa.hidden, sa.num_slices)
        with torch.no_grad():
            first.weight.copy_(sa.weight1[c].T)  # nn.Linear stores (out, in)
            first.bias.copy_(sa.bias1[c])
            second.weight.copy_(sa.weight2[c].T)
            second.bias.copy_(sa.bias2[c])
        mlps.append(nn.Sequential(first, nn.ReLU(), second))
    return mlps


def reference_pam(pam: ProgressiveAttention, x: torch.Tensor, detach_descriptor: bool = False):
    """PAM with explicit loops over batch, channel and slice; ``x`` is (B, C, D, H, W).

    Returns the output (B, C, D, H, W) and the kept slices as a list (per sample) of lists (per channel).
    """
    sa = pam.slice_attention
    mlps = channel_mlps(sa)
    fc = copy.deepcopy(pam.channel_attention.fc)
    n_batch, n_chan, depth = x.shape[:3]
    outputs, kept = [], []
    for b in range(n_batch):
        x_sa, z, kept_b = [], [], []
        for c in range(n_chan):
            avg = torch.stack([x[b, c, d].mean() for d in range(depth)])
            mx = torch.stack([x[b, c, d].max() for d in range(depth)])
            if sa.pool == "avg":
                s = torch.sigmoid(mlps[c](avg))
            elif sa.pool == "max":
                s = torch.sigmoid(mlps[c](mx))
            else:
                s = torch.sigmoid(mlps[c](avg) + mlps[c](mx))
            slices = [x[b, c, d] * s[d] for d in range(depth)]
            x_sa.append(torch.stack(slices))
            prob = torch.softmax(s.detach(), dim=0)
            keep = [d for d in range(depth) if prob[d].item() >= 1.0 / depth]
            if not keep:
                keep = [int(torch.argmax(prob))]
            kept_b.append(keep)
            z_c = torch.stack([slices[d] for d in keep]).mean()
            z.append(z_c.detach() if detach_descriptor else z_c)
        w = fc(torch.stack(z))
        outputs.append(torch.stack([x_sa[c] * w[c] for c in range(n_chan)]))
        kept.append(kept_b)
    return torch.stack(outputs), kept


def to_module_layout(x: torch.Tensor, slice_axis: int) -> torch.Tensor:
    """(B, C, D, H, W) -> the layout a module with ``slice_axis`` expects."""
    return x if slice_axis == 0 else x.permute(0, 1, 3, 4, 2)


def to_paper_layout(x: torch.Tensor, slice_axis: int) -> torch.Tensor:
    return x if slice_axis == 0 else x.permute(0, 1, 4, 2, 3)


def mask_to_lists(mask: torch.Tensor) -> list[list[list[int]]]:
    return [[torch.nonzero(mask[b, c]).flatten().tolist() for c in range(mask.shape[1])] for b in range(mask.shape[0])]


# ---------------------------------------------------------------------------------------------
# PAM vs reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("slice_axis", SLICE_AXES)
def test_pam_matches_loop_reference(pool, slice_axis):
    torch.manual_seed(0)
    pam = ProgressiveAttention(3, channels=5, num_slices=8, slice_reduction=4, channel_reduction=2, pool=pool,
                               slice_axis=slice_axis)
    x = torch.randn(3, 5, 8, 4, 3)  # paper layout, D = 8
    expected, kept = reference_pam(pam, x)

    out, weights, mask = pam.forward_with_mask(to_module_layout(x, slice_axis))

    assert weights.shape == (3, 5, 8) and mask.shape == (3, 5, 8)
    assert mask_to_lists(mask) == kept
    torch.testing.assert_close(to_paper_layout(out, slice_axis), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(to_paper_layout(pam(to_module_layout(x, slice_axis)), slice_axis), expected,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("slice_axis", SLICE_AXES)
def test_key_slices_are_selected_per_sample(slice_axis):
    torch.manual_seed(1)
    pam = ProgressiveAttention(3, channels=4, num_slices=6, slice_reduction=2, channel_reduction=2,
                               slice_axis=slice_axis)
    x = torch.randn(3, 4, 6, 5, 5)
    x[0, :, 1] += 3.0  # a different bright slice per sample
    x[1, :, 4] += 3.0
    x[2, :, 2] -= 3.0
    expected, kept = reference_pam(pam, x)
    assert kept[0] != kept[1] and kept[0] != kept[2], "the samples must select different slices"

    xm = to_module_layout(x, slice_axis)
    out, weights, mask = pam.forward_with_mask(xm)
    assert mask_to_lists(mask) == kept
    torch.testing.assert_close(to_paper_layout(out, slice_axis), expected, atol=1e-5, rtol=1e-5)

    # the original's behaviour (sample 0's selection for the whole batch) gives a different result
    x_sa = pam.slice_attention.apply_weights(xm, weights)
    batch0 = pam.channel_attention(x_sa, mask[:1].expand_as(mask))
    assert not torch.allclose(batch0[1:], out[1:], atol=1e-4)
    torch.testing.assert_close(batch0[:1], out[:1])


@pytest.mark.parametrize("pool", POOLS)
def test_slice_attention_matches_reference_weights(pool):
    torch.manual_seed(2)
    sa = SliceAttention(3, channels=3, num_slices=10, reduction=3, pool=pool, slice_axis=0)
    x = torch.randn(2, 3, 10, 4, 6)
    mlps = channel_mlps(sa)
    out, weights = sa.forward_with_weights(x)
    for b in range(2):
        for c in range(3):
            avg = torch.stack([x[b, c, d].mean() for d in range(10)])
            mx = torch.stack([x[b, c, d].max() for d in range(10)])
            logits = {"avg": mlps[c](avg), "max": mlps[c](mx), "avgmax": mlps[c](avg) + mlps[c](mx)}[pool]
            s = torch.sigmoid(logits)
            torch.testing.assert_close(weights[b, c], s, atol=1e-6, rtol=1e-5)
            for d in range(10):
                torch.testing.assert_close(out[b, c, d], x[b, c, d] * s[d], atol=1e-6, rtol=1e-5)


def test_slice_attention_2d_equals_3d_with_singleton_plane():
    torch.manual_seed(3)
    sa3 = SliceAttention(3, channels=4, num_slices=8, reduction=2, slice_axis=0)
    sa2 = SliceAttention(2, channels=4, num_slices=8, reduction=2, slice_axis=0)
    sa2.load_state_dict(sa3.state_dict())
    x = torch.randn(2, 4, 8, 7)
    torch.testing.assert_close(sa2(x), sa3(x[..., None])[..., 0])
    # 2D, slices along the last axis: rows are pooled over the first axis
    sa2_last = SliceAttention(2, channels=4, num_slices=8, reduction=2, slice_axis=-1)
    sa2_last.load_state_dict(sa3.state_dict())
    torch.testing.assert_close(sa2_last(x.transpose(2, 3)), sa2(x).transpose(2, 3))


def test_slice_attention_is_vectorised_per_channel_parameters():
    sa = SliceAttention(3, channels=6, num_slices=32, reduction=16)
    assert sa.hidden == 2
    assert sa.weight1.shape == (6, 32, 2) and sa.bias1.shape == (6, 2)
    assert sa.weight2.shape == (6, 2, 32) and sa.bias2.shape == (6, 32)
    # no submodule per channel: the per-channel MLPs are stacked parameter tensors
    assert not any(isinstance(m, nn.Linear) for m in sa.modules())
    assert sum(p.numel() for p in sa.parameters()) == 6 * (32 * 2 + 2 + 2 * 32 + 32)


def test_pam_parameter_count_and_clamped_reduction():
    # level depth 4 with r_D = 16: clamped to 4, hidden size 1
    pam = ProgressiveAttention(3, channels=128, num_slices=4, slice_reduction=16, channel_reduction=8)
    assert pam.slice_reduction == 4 and pam.slice_attention.hidden == 1
    sa_params = 128 * (4 * 1 + 1 + 1 * 4 + 4)
    ca_params = 128 * 16 + 16 + 16 * 128 + 128
    assert sum(p.numel() for p in pam.parameters()) == sa_params + ca_params


# ---------------------------------------------------------------------------------------------
# key-slice selection
# ---------------------------------------------------------------------------------------------


def test_key_slice_mask_hand_made():
    # softmax of (0.2, 0.9, 0.1, 0.8) = (0.174, 0.351, 0.158, 0.317): slices 1 and 3 reach 1/4
    weights = torch.tensor(
        [
            [[0.2, 0.9, 0.1, 0.8], [0.5, 0.5, 0.5, 0.5]],
            [[0.9, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]],
        ],
        requires_grad=True,
    )
    mask = key_slice_mask(weights)
    expected = torch.tensor(
        [
            [[False, True, False, True], [True, True, True, True]],  # constant: softmax == 1/D, all kept
            [[True, False, False, False], [False, False, True, True]],
        ]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)
    assert not mask.requires_grad and mask.grad_fn is None


def test_key_slice_mask_constant_input_keeps_every_slice():
    for depth in (1, 3, 7, 13, 32):
        for value in (0.0, 0.1, 1.0 / 3.0, 0.731):
            mask = key_slice_mask(torch.full((2, 3, depth), value))
            assert mask.all(), (depth, value)


def test_key_slice_mask_keeps_at_least_one_slice_and_the_largest():
    torch.manual_seed(4)
    weights = torch.rand(4, 8, 16) ** 8  # skewed: few large weights
    mask = key_slice_mask(weights)
    assert mask.any(-1).all()
    top = weights.argmax(-1, keepdim=True)
    assert torch.gather(mask, -1, top).all()
    # exactly the softmax rule
    prob = torch.softmax(weights, -1)
    assert torch.equal(mask, prob >= 1.0 / 16 - 1e-9)


def test_key_slice_mask_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, C, D\).*\[2, 3\]"):
        key_slice_mask(torch.rand(2, 3))


# ---------------------------------------------------------------------------------------------
# channel attention
# ---------------------------------------------------------------------------------------------


def test_channel_attention_descriptor_over_selected_slices():
    torch.manual_seed(5)
    ca = ChannelAttention(3, channels=2, reduction=1, slice_axis=-1)
    x = torch.randn(2, 2, 3, 4, 5)  # slices along the last dim
    mask = torch.zeros(2, 2, 5, dtype=torch.bool)
    mask[0, 0, [0, 3]] = True
    mask[0, 1, 4] = True
    mask[1, 0, :] = True
    mask[1, 1, [1, 2]] = True
    z = ca.descriptor(x, mask)
    for b in range(2):
        for c in range(2):
            selected = x[b, c][..., mask[b, c]]
            torch.testing.assert_close(z[b, c], selected.mean())
    torch.testing.assert_close(ca.descriptor(x), x.mean(dim=(2, 3, 4)))
    w = ca.fc(z)
    torch.testing.assert_close(ca(x, mask), x * w[:, :, None, None, None])
    with pytest.raises(ValueError, match=r"slice_mask must have shape"):
        ca(x, mask[:, :, :4])


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", POOLS)
def test_gradients_reach_every_pam_parameter(pool):
    torch.manual_seed(6)
    pam = ProgressiveAttention(3, channels=8, num_slices=8, slice_reduction=2, channel_reduction=2, pool=pool)
    x = torch.randn(2, 8, 5, 5, 8)
    (pam(x) * torch.randn(2, 8, 5, 5, 8)).sum().backward()
    for name, p in pam.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_channel_descriptor_is_differentiable():
    torch.manual_seed(7)
    pam = ProgressiveAttention(3, channels=3, num_slices=4, slice_reduction=2, channel_reduction=1, slice_axis=0)
    x = torch.randn(2, 3, 4, 3, 3)
    probe = torch.randn(2, 3, 4, 3, 3)

    def input_grad(fn):
        xi = x.clone().requires_grad_(True)
        (fn(xi) * probe).sum().backward()
        return xi.grad

    grad_module = input_grad(pam)
    grad_ref = input_grad(lambda t: reference_pam(pam, t)[0])
    grad_detached = input_grad(lambda t: reference_pam(pam, t, detach_descriptor=True)[0])
    torch.testing.assert_close(grad_module, grad_ref, atol=1e-5, rtol=1e-4)
    # the descriptor path contributes: the original's detached descriptor gives another gradient
    assert (grad_module - grad_detached).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# argument and input checks
# ---------------------------------------------------------------------------------------------


def test_depth_mismatch_raises_helpful_error():
    pam = ProgressiveAttention(3, channels=4, num_slices=32, slice_axis=-1)
    with pytest.raises(ValueError) as err:
        pam(torch.rand(1, 4, 8, 8, 40))
    message = str(err.value)
    assert "num_slices=32" in message and "slice axis -1" in message and "depth 40" in message
    assert "[1, 4, 8, 8, 40]" in message
    sa = SliceAttention(3, channels=4, num_slices=8, slice_axis=0)
    with pytest.raises(ValueError, match=r"num_slices=8 along slice axis 0 but got depth 6"):
        sa(torch.rand(1, 4, 6, 8, 8))
    with pytest.raises(ValueError, match=r"expects input \(B, 4"):
        sa(torch.rand(1, 3, 8, 8, 8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 1}, r"spatial_dims=1"),
        ({"channels": 0}, r"channels=0"),
        ({"num_slices": 0}, r"num_slices=0"),
        ({"reduction": 0}, r"reduction=0"),
        ({"pool": "median"}, r"pool='median'"),
        ({"slice_axis": 3}, r"slice_axis=3"),
        ({"slice_axis": -4}, r"slice_axis=-4"),
    ],
)
def test_slice_attention_argument_checks(kwargs, match):
    args = {"spatial_dims": 3, "channels": 4, "num_slices": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        SliceAttention(**args)


def test_pam_and_channel_attention_argument_checks():
    with pytest.raises(ValueError, match=r"channel_reduction|reduction=0"):
        ProgressiveAttention(3, channels=4, num_slices=8, channel_reduction=0)
    with pytest.raises(ValueError, match=r"slice_reduction=0"):
        ProgressiveAttention(3, channels=4, num_slices=8, slice_reduction=0)
    with pytest.raises(ValueError, match=r"spatial_dims=4"):
        ChannelAttention(4, channels=4)


def test_pam_scripts():
    torch.manual_seed(8)
    pam = ProgressiveAttention(3, channels=4, num_slices=8, slice_reduction=2, pool="avgmax")
    x = torch.randn(2, 4, 5, 6, 8)
    scripted = torch.jit.script(pam)
    torch.testing.assert_close(scripted(x), pam(x))


# ---------------------------------------------------------------------------------------------
# memory layout: channels-last inputs (the fast sliding-window inferer's windows)
# ---------------------------------------------------------------------------------------------

POOL_DIMS = [(3, [2, 3]), (3, [2, 4]), (3, [3, 4]), (3, [2, 3, 4]), (2, [2]), (2, [3]), (2, [2, 3])]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("spatial_dims,dims", POOL_DIMS)
def test_pool_over_equals_torch_reductions_in_every_layout(kind, spatial_dims, dims):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *([5, 6, 7][:spatial_dims]))
    expected = x.mean(dim=dims) if kind == "avg" else x.amax(dim=dims)
    layout = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    for variant in (x, x.contiguous(memory_format=layout), x.transpose(2, 3)):
        if variant.shape != x.shape:  # a transposed (non-contiguous, not channels-last) view
            variant = variant.transpose(2, 3)
        torch.testing.assert_close(pool_over(variant, dims, kind), expected)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("slice_axis", SLICE_AXES)
def test_pam_on_channels_last_input_equals_contiguous_and_keeps_the_layout(pool, slice_axis):
    torch.manual_seed(3)
    pam = ProgressiveAttention(3, channels=6, num_slices=8, slice_reduction=4, channel_reduction=2, pool=pool,
                               slice_axis=slice_axis)
    x = torch.randn(2, 6, *((8, 5, 4) if slice_axis == 0 else (5, 4, 8)))
    out, weights, mask = pam.forward_with_mask(x)
    out_cl, weights_cl, mask_cl = pam.forward_with_mask(x.contiguous(memory_format=torch.channels_last_3d))
    assert out_cl.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(out_cl, out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights_cl, weights)
    assert torch.equal(mask_cl, mask)
    # the fused forward equals slice attention followed by channel attention over the key slices
    x_sa = pam.slice_attention.apply_weights(x, weights)
    torch.testing.assert_close(out, pam.channel_attention(x_sa, mask), atol=1e-6, rtol=1e-5)
