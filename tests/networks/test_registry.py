"""Network registry: names, per-network defaults, the bundle entry point and registration checks.

Every registered network is built, run and scripted from its own test configuration in test_all_networks.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import networks
from networks.nets.unet import UNET_FEATURES
from networks.nets.vnet import VNET_FEATURES
from networks.registry import (
    NETWORKS,
    build_segmentation_network,
    create_network,
    get_network_spec,
    list_networks,
    register_network,
)


def test_registered_networks():
    assert {"unet", "vnet", "lanet", "resnet_classifier"} <= set(list_networks())
    assert list_networks() == sorted(list_networks())
    net = create_network("UNet", attention="none", features=(4, 8, 8, 16))
    assert isinstance(net, networks.AttentionUNet)
    for name in list_networks():
        spec = get_network_spec(name)
        assert spec.defaults and spec.test_config is not None, f"{name} needs defaults and a test_config"


def test_unknown_network_lists_available():
    with pytest.raises(ValueError, match=r"unknown network 'resnet1000'.*'unet'"):
        create_network("resnet1000")
    with pytest.raises(ValueError, match=r"unknown network 'vnet2'"):
        build_segmentation_network("vnet2")


def test_build_segmentation_network_defaults_to_unet():
    net = build_segmentation_network(attention="se", features=(4, 8, 8, 16), in_channels=1, out_channels=2)
    assert isinstance(net, networks.AttentionUNet) and net.attention == "se"
    assert net(torch.randn(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)


def test_backbone_gets_its_own_defaults_and_explicit_values_win():
    assert get_network_spec("unet").defaults["features"] == UNET_FEATURES
    assert get_network_spec("vnet").defaults["features"] == VNET_FEATURES
    common = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "attention": "pam", "patch_size": (16, 16, 16)}
    vnet = build_segmentation_network(backbone="vnet", **common)
    assert isinstance(vnet, networks.AttentionVNet) and vnet.features == VNET_FEATURES
    assert build_segmentation_network(backbone="unet", **common).features == UNET_FEATURES
    # an explicit value wins over the defaults and over backbone_kwargs
    per_backbone = {"unet": {"features": (4, 8)}, "VNet": {"features": (4, 8, 16), "kernel_size": 3}}
    vnet = build_segmentation_network(backbone="vnet", backbone_kwargs=per_backbone, **common)
    assert vnet.features == (4, 8, 16) and vnet.encoder[0].convs.convs[0].conv.kernel_size == (3, 3, 3)
    assert build_segmentation_network(backbone="unet", backbone_kwargs=per_backbone, **common).features == (4, 8)
    explicit = build_segmentation_network(backbone="vnet", backbone_kwargs=per_backbone, features=(2, 4), **common)
    assert explicit.features == (2, 4)
    assert create_network("vnet", **common, features=(2, 4)).features == (2, 4)


def test_bundle_style_config_switches_backbone():
    """A bundle leaves backbone-specific keys out (or under backbone_kwargs): overriding the backbone alone
    builds the other backbone with its own features."""
    from monai.bundle import ConfigParser

    config = {
        "patch_size": [16, 16, 16],
        "network_def": {
            "_target_": "networks.build_segmentation_network",
            "backbone": "unet",
            "spatial_dims": 3,
            "in_channels": 4,
            "out_channels": 3,
            "attention": "se",
            "patch_size": "@patch_size",
            "backbone_kwargs": {"unet": {"features": [4, 8, 8, 16]}},
        },
    }
    parser = ConfigParser(config)
    parser["network_def#attention"] = "pam"
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, networks.AttentionUNet) and net.attention == "pam" and net.features == (4, 8, 8, 16)
    assert net(torch.randn(1, 4, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
    parser = ConfigParser(config)
    parser["network_def#backbone"] = "vnet"
    vnet = parser.get_parsed_content("network_def")
    assert isinstance(vnet, networks.AttentionVNet) and vnet.features == VNET_FEATURES


def test_register_network_decorator_and_checks():
    class TinyNet(nn.Module):
        def __init__(self, channels: int = 2, depth: int = 1):
            super().__init__()
            self.conv = nn.Conv3d(channels, channels, 1)

        def forward(self, x):
            return self.conv(x)

    try:
        assert register_network("test_tiny_net", defaults={"channels": 3})(TinyNet) is TinyNet
        assert "test_tiny_net" in list_networks()
        assert create_network("test_tiny_net").conv.in_channels == 3  # the registered default
        assert create_network("test_tiny_net", channels=4).conv.in_channels == 4
        assert register_network("test_tiny_net", TinyNet) is TinyNet  # re-registering the same object is harmless
        with pytest.raises(ValueError, match=r"'test_tiny_net' is already registered"):
            register_network("test_tiny_net")(nn.Identity)
    finally:
        NETWORKS.pop("test_tiny_net", None)
    assert "test_tiny_net" not in list_networks()
    with pytest.raises(ValueError, match=r"defaults of network 'bad'"):
        register_network("bad", TinyNet, defaults={"width": 3})
    with pytest.raises(ValueError, match=r"test_config arguments of network 'bad'"):
        register_network("bad", TinyNet, test_config={"cases": [{"kwargs": {"width": 3}, "input": (1,), "output": (1,)}]})
    with pytest.raises(ValueError, match=r"needs 'cases'"):
        register_network("bad", TinyNet, test_config={"kwargs": {}})
    with pytest.raises(ValueError, match=r"needs 'input' and 'output'"):
        register_network("bad", TinyNet, test_config={"cases": [{"input": (1,)}]})
    with pytest.raises(ValueError, match=r"scriptable must be True or a reason"):
        register_network("bad", TinyNet, scriptable=False)
    assert "bad" not in list_networks()


def test_package_reexports():
    for name in ("AttentionUNet", "create_network", "register_network", "list_networks",
                 "build_segmentation_network", "get_network_spec", "NetworkSpec"):
        assert hasattr(networks, name) and name in networks.__all__
