"""pipelines.engines.precision: amp resolution per device, channels-last training, float32 outputs."""

from __future__ import annotations

import collections
import copy
import warnings

import pytest
import torch
import torch.nn as nn

from networks.blocks.norm import LayoutPreservingInstanceNorm
from pipelines.engines import precision


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)


@pytest.fixture
def avx2_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    precision._warn_no_bf16.cache_clear()


def test_autocast_dtype_per_device(bf16_cpu):
    assert precision.autocast_dtype("cpu", False) is None
    assert precision.autocast_dtype("cuda", False) is None
    assert precision.autocast_dtype("cuda:0", True) is torch.float16
    assert precision.autocast_dtype(torch.device("cpu"), True) is torch.bfloat16


def test_cpu_without_bf16_instructions_stays_float32_and_warns_once(avx2_cpu):
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        assert precision.autocast_dtype("cpu", True) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.autocast_dtype("cpu", True) is None  # once per process


@pytest.mark.parametrize("amp", ["true", "false", 1, None])
def test_amp_must_be_a_boolean(amp):
    with pytest.raises(ValueError, match=repr(amp)):
        precision.autocast_dtype("cpu", amp)


def test_autocast_context_computes_in_bf16_only_where_resolved(bf16_cpu, monkeypatch):
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with precision.autocast("cpu", True):
        assert torch.mm(a, b).dtype == torch.bfloat16
    with precision.autocast("cpu", False):
        assert torch.mm(a, b).dtype == torch.float32
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    precision._warn_no_bf16.cache_clear()
    with pytest.warns(UserWarning), precision.autocast("cpu", True):
        assert torch.mm(a, b).dtype == torch.float32


def test_cpu_bf16_supported_is_a_boolean():
    assert isinstance(precision.cpu_bf16_supported(), bool)


def test_to_channels_last_layouts():
    x4, x5, x3 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 4)
    y4, y5 = precision.to_channels_last(x4), precision.to_channels_last(x5)
    assert y4.is_contiguous(memory_format=torch.channels_last) and not y4.is_contiguous()
    assert y5.is_contiguous(memory_format=torch.channels_last_3d) and not y5.is_contiguous()
    assert torch.equal(y4, x4) and torch.equal(y5, x5)
    assert precision.to_channels_last(x3) is x3


def _net(spatial_dims: int) -> nn.Module:
    conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d
    torch.manual_seed(0)
    return nn.Sequential(conv(2, 6, 3, padding=1), norm(6, affine=True), nn.PReLU(), conv(6, 3, 3, padding=1))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_prepare_network_trains_channels_last_like_the_plain_network(spatial_dims):
    plain = _net(spatial_dims)
    fast = precision.prepare_network(copy.deepcopy(plain), channels_last=True)
    layout = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
    assert fast[0].weight.is_contiguous(memory_format=layout) and not fast[0].weight.is_contiguous()
    assert isinstance(fast[1], LayoutPreservingInstanceNorm)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 2, *([7, 6, 5][:spatial_dims]))
    out_plain, out_fast = plain(x), fast(precision.to_channels_last(x))
    assert out_fast.is_contiguous(memory_format=layout)
    torch.testing.assert_close(out_fast, out_plain, atol=1e-5, rtol=1e-5)
    out_plain.square().mean().backward()
    out_fast.square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    # a channels-last checkpoint loads into the plain network and back
    reloaded = _net(spatial_dims)
    reloaded.load_state_dict(fast.state_dict())
    torch.testing.assert_close(reloaded(x), fast(x), atol=1e-5, rtol=1e-5)


def test_prepare_network_off_leaves_the_network_alone():
    net = _net(3)
    before = [p.data_ptr() for p in net.parameters()]
    assert precision.prepare_network(net, channels_last=False) is net
    assert [p.data_ptr() for p in net.parameters()] == before and isinstance(net[1], nn.InstanceNorm3d)


def test_float32_outputs_casts_nested_floats_only():
    Pair = collections.namedtuple("Pair", "a b")
    half = torch.ones(2, dtype=torch.bfloat16)
    out = precision.float32_outputs(
        {"logits": half, "parts": [half, torch.arange(3)], "pair": Pair(half, None), "name": "x"}
    )
    assert out["logits"].dtype == torch.float32 and out["parts"][0].dtype == torch.float32
    assert out["parts"][1].dtype == torch.int64 and isinstance(out["pair"], Pair) and out["pair"].b is None
    assert out["pair"].a.dtype == torch.float32 and out["name"] == "x"
    same = torch.zeros(2)
    assert precision.float32_outputs(same) is same
