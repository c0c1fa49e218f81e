"""Network registry: every registered network with every attention block, and the bundle entry point."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn as nn

import networks
from networks.blocks.attention import list_attention_blocks
from networks.registry import build_segmentation_network, create_network, list_networks, register_network

# shrink each network for the sweep; a network registered later adds its entry here
TINY_KWARGS = {"unet": {"features": (4, 8, 8, 16)}, "vnet": {"features": (4, 8, 8, 16, 16)}}
PATCH = (16, 16, 16)


def _segmentation_networks() -> list[str]:
    """Registered networks with an attention plug (classifiers such as LA-Net are swept by their own tests)."""
    from networks.registry import _NETWORKS

    return [n for n in list_networks() if {"attention", "patch_size"} <= set(inspect.signature(_NETWORKS[n]).parameters)]


def test_unet_is_registered():
    assert "unet" in list_networks()
    assert list_networks() == sorted(list_networks())
    net = create_network("UNet", attention="none", features=(4, 8, 8, 16))
    assert isinstance(net, networks.AttentionUNet)


@pytest.mark.parametrize("attention", list_attention_blocks())
@pytest.mark.parametrize("name", _segmentation_networks())
def test_create_forward_backward(name, attention):
    torch.manual_seed(0)
    net = create_network(
        name, spatial_dims=3, in_channels=2, out_channels=3, attention=attention, patch_size=PATCH,
        **TINY_KWARGS.get(name, {}),
    )
    x = torch.randn(2, 2, *PATCH)
    out = net(x)
    assert out.shape == (2, 3, *PATCH)
    out.square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


def test_unknown_network_lists_available():
    with pytest.raises(ValueError, match=r"unknown network 'resnet1000'.*'unet'"):
        create_network("resnet1000")
    with pytest.raises(ValueError, match=r"unknown network 'vnet2'"):
        build_segmentation_network("vnet2")


def test_build_segmentation_network_defaults_to_unet():
    net = build_segmentation_network(attention="se", features=(4, 8, 8, 16), in_channels=1, out_channels=2)
    assert isinstance(net, networks.AttentionUNet) and net.attention == "se"
    assert net(torch.randn(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)


def test_bundle_style_config_with_backbone_override():
    from monai.bundle import ConfigParser

    parser = ConfigParser(
        {
            "patch_size": [16, 16, 8],
            "network_def": {
                "_target_": "networks.build_segmentation_network",
                "backbone": "unet",
                "spatial_dims": 3,
                "in_channels": 4,
                "out_channels": 3,
                "features": [4, 8, 8, 16],
                "attention": "se",
                "patch_size": "@patch_size",
            },
        }
    )
    parser["network_def#attention"] = "pam"
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, networks.AttentionUNet) and net.attention == "pam"
    assert net(torch.randn(1, 4, 16, 16, 8)).shape == (1, 3, 16, 16, 8)


def test_register_network_decorator():
    @register_network("test_tiny_net")
    class TinyNet(nn.Module):
        def __init__(self, channels: int = 2):
            super().__init__()
            self.conv = nn.Conv3d(channels, channels, 1)

        def forward(self, x):
            return self.conv(x)

    from networks import registry

    try:
        assert "test_tiny_net" in list_networks()
        assert isinstance(create_network("test_tiny_net", channels=3), TinyNet)
        assert register_network("test_tiny_net")(TinyNet) is TinyNet  # re-registering the same object is harmless
        with pytest.raises(ValueError, match=r"'test_tiny_net' is already registered"):
            register_network("test_tiny_net")(nn.Identity)
    finally:
        registry._NETWORKS.pop("test_tiny_net", None)
    assert "test_tiny_net" not in list_networks()


def test_package_reexports():
    for name in ("AttentionUNet", "create_network", "register_network", "list_networks",
                 "build_segmentation_network"):
        assert hasattr(networks, name) and name in networks.__all__
