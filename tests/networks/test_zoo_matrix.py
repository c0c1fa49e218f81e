"""Every segmentation backbone with every attention block: build, forward, backward and TorchScript, 2D and 3D."""

from __future__ import annotations

import inspect

import pytest
import torch

from networks.blocks.attention import list_attention_blocks
from networks.registry import _NETWORKS, create_network, list_networks

# shrunken widths per backbone; a backbone registered later runs with its defaults until added here
TINY_KWARGS = {"unet": {"features": (4, 8, 16)}, "vnet": {"features": (4, 8, 16), "kernel_size": 3}}
PATCH = {3: (16, 12, 8), 2: (16, 12)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks run much faster on one thread, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _segmentation_backbones() -> list[str]:
    """Registered networks that take an ``attention`` block and a ``patch_size`` (not e.g. classifiers)."""
    names = []
    for name in list_networks():
        params = inspect.signature(_NETWORKS[name]).parameters
        if {"attention", "patch_size", "spatial_dims"} <= set(params):
            names.append(name)
    return names


def test_backbones_found():
    assert {"unet", "vnet"} <= set(_segmentation_backbones())
    assert {"none", "se", "pam", "scse", "csse", "pe", "cbam", "ag"} <= set(list_attention_blocks())


@pytest.mark.parametrize("spatial_dims", [3, 2])
@pytest.mark.parametrize("attention", list_attention_blocks())
@pytest.mark.parametrize("backbone", _segmentation_backbones())
def test_build_forward_backward_script(backbone, attention, spatial_dims):
    torch.manual_seed(0)
    patch = PATCH[spatial_dims]
    net = create_network(
        backbone, spatial_dims=spatial_dims, in_channels=2, out_channels=3, attention=attention, patch_size=patch,
        **TINY_KWARGS.get(backbone, {}),
    )
    x = torch.randn(2, 2, *patch)
    out = net(x)
    assert out.shape == (2, 3, *patch)
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing
    net.eval()
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(torch.jit.script(net)(x), expected, atol=1e-5, rtol=1e-4)
