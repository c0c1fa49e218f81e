"""Dual-Domain block: the spectral path against the explicit magnitude/phase form, identities, shapes, TorchScript."""

from __future__ import annotations

import pytest
import torch

from networks.blocks.dual_domain import DualDomainBlock

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = [(2, (2, 6, 8, 10)), (2, (1, 4, 7, 9)), (3, (2, 3, 4, 6, 5))]


def _set_identity(block: DualDomainBlock) -> None:
    """1x1 convs to identity (the fuse conv without bias), BN in eval with its initial statistics."""
    with torch.no_grad():
        for branch in (block.spatial, block.frequency):
            if hasattr(branch, "conv"):
                branch.conv.weight.zero_()
                for c in range(block.channels):
                    branch.conv.weight[(c, c) + (0,) * block.spatial_dims] = 1.0
        block.fuse.weight.zero_()
        block.fuse.bias.zero_()
        for c in range(block.channels):
            block.fuse.weight[(c, c) + (0,) * block.spatial_dims] = 1.0
    block.eval()


@pytest.mark.parametrize("spatial_dims,shape", SHAPES)
def test_spectral_path_alone_with_scale_one_returns_its_input(spatial_dims, shape):
    torch.manual_seed(0)
    block = DualDomainBlock(spatial_dims, shape[1], spectral_scale=1.0, use_spatial=False)
    _set_identity(block)
    x = torch.rand(shape)  # non-negative, as after a ReLU: the branch's ReLU keeps it
    with torch.no_grad():
        torch.testing.assert_close(block.spectral(x), x, atol=1e-6, rtol=1e-5)
        # BN in eval with mean 0, var 1 divides by sqrt(1 + eps)
        torch.testing.assert_close(block(x), x / (1 + 1e-5) ** 0.5, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("spatial_dims,shape", SHAPES)
def test_spectral_path_is_magnitude_scaled_with_phase_kept(spatial_dims, shape):
    torch.manual_seed(1)
    block = DualDomainBlock(spatial_dims, shape[1], spectral_scale=1.1)
    x = torch.randn(shape)
    dims = list(range(2, x.ndim))
    spectrum = torch.fft.rfftn(x, dim=dims, norm="ortho")
    reference = torch.fft.irfftn(
        torch.polar(spectrum.abs() * 1.1, spectrum.angle()), s=x.shape[2:], dim=dims, norm="ortho"
    )
    torch.testing.assert_close(block.spectral(x), reference, atol=1e-5, rtol=1e-5)
    # a constant weight is a plain scaling (the Fourier transform is linear)
    torch.testing.assert_close(block.spectral(x), 1.1 * x, atol=1e-5, rtol=1e-5)


def test_learnable_channel_weight_scales_each_channel_and_trains():
    block = DualDomainBlock(2, 3, spectral_scale=1.1, spectral_weight="channel")
    assert isinstance(block.spectral_weight, torch.nn.Parameter)
    assert block.spectral_weight.tolist() == pytest.approx([1.1] * 3)
    with torch.no_grad():
        block.spectral_weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.randn(2, 3, 8, 8)
    expected = x * torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(block.spectral(x), expected, atol=1e-5, rtol=1e-5)
    block(x).square().mean().backward()
    assert block.spectral_weight.grad is not None and block.spectral_weight.grad.abs().sum() > 0
    # the fixed weight is no parameter and not saved
    fixed = DualDomainBlock(2, 3)
    assert "spectral_weight" not in dict(fixed.named_parameters()) and "spectral_weight" not in fixed.state_dict()


def test_branches_and_fuse_widths():
    both = DualDomainBlock(2, 5)
    assert both.fuse.in_channels == 10 and both.fuse.out_channels == 5 and both.fuse.kernel_size == (1, 1)
    assert DualDomainBlock(2, 5, use_frequency=False).fuse.in_channels == 5
    conv = both.spatial.conv
    assert conv.kernel_size == (1, 1) and conv.bias is None


def test_gradient_finite_for_an_all_zero_channel():
    block = DualDomainBlock(2, 2)
    x = torch.zeros(2, 2, 4, 4)
    x[:, 1] = torch.rand(2, 4, 4)
    x.requires_grad_(True)
    block(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_half_precision_input_keeps_dtype():
    block = DualDomainBlock(2, 2).eval()
    x = torch.rand(1, 2, 6, 6, dtype=torch.bfloat16)
    assert block.spectral(x).dtype == torch.bfloat16


@pytest.mark.parametrize("spatial_dims,shape", SHAPES[:1] + SHAPES[2:])
def test_torchscript_matches_eager(spatial_dims, shape):
    torch.manual_seed(2)
    block = DualDomainBlock(spatial_dims, shape[1], spectral_weight="channel").eval()
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(block)(x), block(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"spatial_dims": 1, "channels": 4}, "spatial_dims"),
        ({"spatial_dims": 2, "channels": 0}, "channels"),
        ({"spatial_dims": 2, "channels": 4, "spectral_weight": "frequency"}, "spectral_weight"),
        ({"spatial_dims": 2, "channels": 4, "use_spatial": False, "use_frequency": False}, "at least one branch"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DualDomainBlock(**kwargs)


def test_bad_input_names_the_block():
    with pytest.raises(ValueError, match="DualDomainBlock expects input"):
        DualDomainBlock(2, 4)(torch.rand(1, 3, 8, 8))
