"""Every registered network from its own tiny test configuration: build, forward, backward and TorchScript.

A network is covered by registering it with a ``test_config`` (see :mod:`networks.registry`); UNet and VNet
sweep every registered attention block in 2D and 3D through their configurations.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from networks.blocks.attention import list_attention_blocks
from networks.registry import (
    NETWORKS,
    get_network_spec,
    list_networks,
    register_network,
)

CASES = [
    pytest.param(name, label, id=f"{name}-{label}")
    for name in list_networks()
    for label, *_ in get_network_spec(name).test_cases()
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _case(name: str, label: str):
    return next(case for case in get_network_spec(name).test_cases() if case[0] == label)


def _check_output(out, expected) -> dict[str, torch.Tensor]:
    """The output as ``{key: tensor}`` after checking its shape(s) against ``expected``."""
    if isinstance(expected, dict):
        assert isinstance(out, dict) and set(out) == set(expected), out.keys()
        # a list entry (one map per pyramid level, RetinaNet) is checked level by level as <key>_0, <key>_1, ...
        levels = {k for k, v in expected.items() if isinstance(v, list)}
        assert all(isinstance(out[k], list) and len(out[k]) == len(expected[k]) for k in levels), levels
        out = {f"{k}_{i}": t for k in levels for i, t in enumerate(out[k])} | {k: out[k] for k in out if k not in levels}
        expected = {f"{k}_{i}": s for k in levels for i, s in enumerate(expected[k])} | {
            k: expected[k] for k in expected if k not in levels}
        for key, shape in expected.items():
            assert tuple(out[key].shape) == tuple(shape), (key, out[key].shape)
        return out
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(expected), out.shape
    return {"out": out}


def test_every_network_has_a_test_config():
    missing = [name for name in list_networks() if not list(get_network_spec(name).test_cases())]
    assert not missing, f"register these networks with a test_config: {missing}"


def test_segmentation_backbones_sweep_every_attention_in_2d_and_3d():
    for name in ("unet", "vnet"):
        seen = {(kwargs["attention"], len(shape) - 2) for _, kwargs, shape, _ in get_network_spec(name).test_cases()}
        assert seen == {(a, d) for a in list_attention_blocks() for d in (2, 3)}, name


def check_case(spec, kwargs: dict, input_shape: tuple, expected) -> None:
    """Build ``spec``'s network with ``kwargs``, run forward and backward on an input of ``input_shape``, check the
    output against ``expected`` and script it (or check that scripting fails when the spec says why it does)."""
    torch.manual_seed(0)
    net = spec.factory(**kwargs)
    x = torch.randn(*input_shape)
    outputs = _check_output(net(x), expected)
    sum(o.float().square().mean() for o in outputs.values()).backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing

    net.eval()
    if spec.scriptable is not True:
        with pytest.raises(Exception):  # noqa: B017 (TorchScript raises several error types)
            torch.jit.script(net)
        return
    with torch.no_grad():
        expected_out = _check_output(net(x), expected)
        scripted = _check_output(torch.jit.script(net)(x), expected)
    for key, value in expected_out.items():
        torch.testing.assert_close(scripted[key], value, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name, label", CASES)
def test_build_forward_backward_script(name, label):
    _, kwargs, input_shape, expected = _case(name, label)
    check_case(get_network_spec(name), kwargs, input_shape, expected)


class _Unscriptable(nn.Module):
    def __init__(self, channels: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x, scale=lambda t: t):  # a lambda default: TorchScript cannot compile it
        return {"out": scale(self.conv(x))}


def test_a_registered_reason_means_scripting_fails():
    config = {"cases": [{"kwargs": {"channels": 3}, "input": (1, 3, 4, 4), "output": {"out": (1, 3, 4, 4)}}]}
    register_network("test_unscriptable", _Unscriptable, test_config=config, scriptable="lambda default")
    try:
        spec = get_network_spec("test_unscriptable")
        ((label, kwargs, shape, expected),) = spec.test_cases()
        assert label == "2d"
        check_case(spec, kwargs, shape, expected)
        with pytest.raises(Exception):  # noqa: B017 (claiming scriptability would be caught)
            check_case(dataclasses.replace(spec, scriptable=True), kwargs, shape, expected)
    finally:
        NETWORKS.pop("test_unscriptable", None)
