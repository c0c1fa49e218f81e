"""Joint segmentation + classification network: shapes, decoder wiring, labels to the augmentor, switches, weights."""

from __future__ import annotations

import pytest
import torch

from networks.blocks.dual_domain import DualDomainBlock
from networks.blocks.latent_augment import LatentAugmentor
from networks.blocks.zoo import ConvBlockAttention
from networks.nets.joint_segcls import (
    JointSegClsNet,
    NestedUNetDecoder,
    joint_encoder_names,
)
from networks.registry import create_network

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"decoder_channels": (32, 16, 16, 8, 8), "num_classes": 3}
BUSI_COUNTS = (133, 437, 210)
LABELS = torch.tensor([1, 0, 2, 1, 0, 2])  # batch of 6, two of each class


def _net(**kwargs) -> JointSegClsNet:
    torch.manual_seed(0)
    return JointSegClsNet(**{"encoder": "efficientnet-b0", **SMALL, **kwargs})


# (encoder, decoder, input shape, out_channels)
SHAPE_CASES = [
    ("efficientnet-b0", "unetplusplus", (4, 1, 64, 64), 1),
    ("efficientnet-b0", "unet", (4, 3, 64, 96), 1),
    ("resnet18", "unetplusplus", (4, 1, 64, 64), 2),
    ("resnet10", "unet", (2, 1, 32, 32, 32), 1),
]


@pytest.mark.parametrize("encoder,decoder,shape,out_channels", SHAPE_CASES)
def test_output_shapes_and_deterministic_eval(encoder, decoder, shape, out_channels):
    net = _net(
        encoder=encoder, decoder=decoder, spatial_dims=len(shape) - 2, in_channels=shape[1], out_channels=out_channels
    ).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        out = net(x)
        again = net(x, labels=torch.zeros(shape[0], dtype=torch.long))  # labels are ignored in eval mode
    assert set(out) == {"seg", "logits"}
    assert out["seg"].shape == (shape[0], out_channels, *shape[2:])
    assert out["logits"].shape == (shape[0], 3)
    for key in out:
        assert torch.equal(out[key], again[key])


def test_bottleneck_order_and_blocks():
    net = _net(class_counts=BUSI_COUNTS)
    assert isinstance(net.dual_domain, DualDomainBlock) and net.dual_domain.spectral_scale == pytest.approx(1.1)
    assert isinstance(net.augmentor, LatentAugmentor) and net.augmentor.minority.tolist() == [True, False, True]
    assert isinstance(net.cbam, ConvBlockAttention)
    assert net.cbam.sam.convs[0].kernel_size == (7, 7) and net.cbam.cam.mlp[0].out_features == 320 // 16
    assert net.classifier[-1].in_features == 320  # b0's bottleneck
    calls = []
    for name in ("dual_domain", "augmentor", "cbam"):
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    net.eval()(torch.randn(1, 1, 64, 64))
    assert calls == ["dual_domain", "augmentor", "cbam"]


def test_labels_reach_the_augmentor_in_training():
    net = _net(class_counts=BUSI_COUNTS, augment_seed=0).train()
    x = torch.randn(6, 1, 64, 64)
    torch.manual_seed(1)  # EfficientNet's drop-connect draws from the global generator
    plain = net(x)["logits"]
    torch.manual_seed(1)
    augmented = net(x, labels=LABELS)["logits"]
    # the classifier sees the augmented bottleneck (no batch norm after the augmentor): benign rows unchanged
    benign = LABELS == 1
    torch.testing.assert_close(augmented[benign], plain[benign])
    assert (augmented[~benign] - plain[~benign]).abs().amax(dim=1).min() > 0


def test_without_augmentor_labels_change_nothing():
    net = _net(latent_augment=False, class_counts=BUSI_COUNTS).train()
    x = torch.randn(6, 1, 64, 64)
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(1)
    b = net(x, labels=LABELS)
    assert torch.equal(a["logits"], b["logits"]) and torch.equal(a["seg"], b["seg"])


def test_switches_remove_blocks():
    net = _net(dual_domain=False, latent_augment=False, cbam=False)
    names = [n for n, _ in net.named_modules()]
    assert not any(n.startswith(("dual_domain.", "cbam.")) for n in names)
    assert not any(isinstance(m, (DualDomainBlock, LatentAugmentor, ConvBlockAttention)) for m in net.modules())
    assert net.eval()(torch.randn(1, 1, 64, 64))["seg"].shape == (1, 1, 64, 64)
    # the classification head of MONAI's EfficientNet is removed (unused by the feature forward)
    assert not any(n.startswith(("encoder._fc", "encoder._conv_head", "encoder._bn1")) for n in names)


def test_deep_supervision_in_training_only():
    net = _net(deep_supervision=True).train()
    out = net(torch.randn(2, 1, 64, 64))
    assert out["seg_deep"].shape == (2, 3, 1, 64, 64)
    assert set(net.eval()(torch.randn(2, 1, 64, 64))) == {"seg", "logits"}
    with pytest.raises(ValueError, match="deep_supervision"):
        _net(decoder="unet", deep_supervision=True)


@pytest.mark.parametrize("dense,nodes,rows", [(True, 10, [0, 1, 2, 3, 0, 1, 2, 0, 1, 0]), (False, 4, [3, 2, 1, 0])])
def test_decoder_nodes_and_dense_skip_widths(dense, nodes, rows):
    enc, dec = (4, 6, 8, 10, 12), (20, 16, 12, 8, 4)
    decoder = NestedUNetDecoder(2, enc, dec, dense=dense)
    assert len(decoder.nodes) == nodes and decoder._rows == rows
    # input width of each node's two convs: skips (X[i][0..j-1], or X[i][0] alone) + the upsampled half
    first = [node.convs.conv_0.conv.in_channels for node in decoder.nodes]
    # a node at depth i has width dec[3 - i]; the node below is upsampled to half its width
    if dense:  # X[0][1]: X[0][0] + X[1][0] / 2; X[0][4]: X[0][0] + three X[0][j] (dec[3]) + X[1][3] (dec[2]) / 2
        assert first[0] == 4 + 6 // 2 and first[-1] == 4 + 3 * 8 + 12 // 2
        assert first[3] == 10 + 12 // 2  # X[3][1]
    else:  # X[3][1] = X[3][0] + X[4][0] / 2, X[2][2] = X[2][0] + X[3][1] / 2, ...
        assert first == [10 + 12 // 2, 8 + 20 // 2, 6 + 16 // 2, 4 + 12 // 2]
    feats = [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(enc)]
    outs = decoder(feats)
    assert outs[0].shape == (1, 4, 64, 64)
    assert [o.shape[1:] for o in outs[1:]] == [(8, 32, 32)] * (4 if dense else 1)


def test_class_counts_setter_and_state_dict():
    net = _net()
    assert net.augmentor.minority.tolist() == [False, False, False]
    net.set_class_counts(BUSI_COUNTS)
    assert net.state_dict()["augmentor.minority"].tolist() == [True, False, True]
    assert _net(minority=(2,)).augmentor.minority.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="not both"):
        _net(class_counts=BUSI_COUNTS, minority=(0,))


def test_encoder_weights_from_a_local_file(tmp_path):
    source = _net()
    path = tmp_path / "encoder.pt"
    torch.save({"model": {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}}, path)
    net = _net(encoder_weights=str(path))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value), key
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        _net(encoder_weights=str(tmp_path / "missing.pt"))
    with pytest.raises(RuntimeError, match="encoder.pt"):
        _net(encoder="efficientnet-b1", encoder_weights=str(path))


def test_registry_defaults_and_bad_arguments():
    net = create_network("joint_segcls", encoder="efficientnet-b0", decoder_channels=(16, 8, 8, 8, 8))
    assert isinstance(net, JointSegClsNet) and net.num_classes == 3 and net.encoder_name == "efficientnet-b0"
    assert "efficientnet-b6" in joint_encoder_names() and "resnet18" in joint_encoder_names()
    with pytest.raises(ValueError, match="unknown encoder"):
        _net(encoder="vgg16")
    with pytest.raises(ValueError, match="unknown decoder"):
        _net(decoder="deeplab")
    with pytest.raises(ValueError, match="decoder_channels"):
        _net(decoder_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="divisible by 32"):
        _net().eval()(torch.randn(1, 1, 64, 48))


def test_scripted_network_matches_eager_and_ignores_labels():
    net = _net(class_counts=BUSI_COUNTS, spectral_weight="channel").eval()
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = net(x)
        got = scripted(x, torch.tensor([0, 2]))
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-4)


def test_encoder_batchnorm_momentum():
    """The encoder's running statistics follow the data at PyTorch's momentum 0.1 by default (MONAI's EfficientNet
    uses 0.01, under which a short training run evaluates with far-off statistics); None keeps MONAI's."""

    def momenta(net):
        return {m.momentum for m in net.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}

    kwargs = dict(encoder="efficientnet-b0", decoder_channels=(16, 16, 8, 8, 8))
    assert momenta(JointSegClsNet(**kwargs)) == {0.1}
    assert momenta(JointSegClsNet(**kwargs, encoder_bn_momentum=0.3)) == {0.3}
    assert momenta(JointSegClsNet(**kwargs, encoder_bn_momentum=None)) == {0.01}
