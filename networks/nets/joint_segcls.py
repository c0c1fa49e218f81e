"""Joint lesion segmentation and classification with a dual-domain, latent-augmented, CBAM-attended bottleneck.

After the BUSI thesis code "Dual_Aug_Net" (Nimalesh, Thesis_Phase_2): an EfficientNet (or ResNet) encoder, a UNet++
(or UNet) decoder, and at the bottleneck, in order,

1. :class:`~networks.blocks.dual_domain.DualDomainBlock` (spatial + frequency branches, fused),
2. :class:`~networks.blocks.latent_augment.LatentAugmentor` (training only: noise and intra-class MixUp on the
   minority classes' features),
3. CBAM, the project's :class:`~networks.blocks.zoo.ConvBlockAttention` (channel MLP with reduction 16 over
   average and max pooling, then a 7x7 spatial gate; Woo et al., ECCV 2018).

The classification head is global average pooling of the post-CBAM bottleneck -> (dropout) -> linear; the decoder
reads the post-CBAM bottleneck and the encoder's four shallower feature maps as skips.

Papers: UNet++, Zhou et al., DLMIA 2018, https://arxiv.org/abs/1807.10165; EfficientNet, Tan and Le, ICML 2019.

**How the labels reach the augmentor.** ``forward(x, labels)`` takes the batch's class indices as an optional
second argument; training steps pass them (with MONAI's ``SupervisedTrainer``, a ``prepare_batch`` that returns
``(image, targets, (), {"labels": label})`` makes the trainer call ``network(image, labels=label)``).
``forward(x)`` alone never augments, so inference, evaluation and TorchScript export need nothing else; in eval
mode the labels are ignored.

**Targets of a mixed sample.** MixUp only mixes features of two samples of the same class, so the class target
stays the sample's class. The mask target also stays the sample's own mask: only the bottleneck (stride 32) is
mixed, while the four skip connections (strides 2-16) that carry the spatial detail come from the sample itself.
The mask loss of a mixed sample is therefore computed against its own mask, unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.networks.nets.basic_unet import UpCat
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE, SegmentationHead

from networks.blocks.checks import check_spatial_dims
from networks.blocks.dual_domain import DualDomainBlock
from networks.blocks.latent_augment import LatentAugmentor, minority_classes
from networks.blocks.zoo import ConvBlockAttention
from networks.registry import register_network
from networks.utils import extract_model_state

__all__ = ["JOINT_DECODERS", "JointSegClsNet", "NestedUNetDecoder", "joint_encoder_names"]

#: ``"unetplusplus"``: nested dense skips (UNet++); ``"unet"``: plain skips.
JOINT_DECODERS = ("unetplusplus", "unet")

def joint_encoder_names() -> list[str]:
    """The encoders MONAI's FlexibleUNet registry offers: ``efficientnet-b0`` ... ``-b8``, ``-l2`` and
    ``resnet10`` ... ``resnet200`` (five feature maps at strides 2, 4, 8, 16, 32)."""
    return sorted(FLEXUNET_BACKBONE.register_dict)


class NestedUNetDecoder(nn.Module):
    """UNet++ decoder (nested dense skips), or the plain UNet decoder, over five encoder feature maps.

    Encoder features ``X[i][0]`` (``i = 0..n-1`` at strides ``2^(i+1)``, the last the bottleneck) and nodes

    ``X[i][j] = UpCat(X[i+1][j-1], concat(X[i][0], ..., X[i][j-1]))``  for ``j >= 1``, ``i + j <= n - 1``

    (UNet++; ``dense=False`` keeps only the nodes on the diagonal ``i + j = n - 1`` with the single skip
    ``X[i][0]``: the decoder of MONAI's FlexibleUNet). A node at depth ``i`` has ``decoder_channels[n - 2 - i]``
    channels; a final block upsamples ``X[0][n-1]`` to stride 1 without a skip (``decoder_channels[-1]``
    channels). The blocks are MONAI's :class:`~monai.networks.nets.basic_unet.UpCat` (upsample x2, concatenate,
    two conv-norm-act).

    Args:
        spatial_dims: 2 or 3.
        encoder_channels: channels of the ``n`` encoder feature maps, shallow to deep.
        decoder_channels: ``n`` widths, deep to shallow (the last is the final block's).
        dense: UNet++ (True) or UNet (False).
        act: activation of the conv blocks.
        norm: norm of the conv blocks.
        upsample: MONAI upsampling mode (``"nontrainable"``, ``"deconv"``, ``"pixelshuffle"``).
        interp_mode: interpolation of ``"nontrainable"``.

    Raises:
        ValueError: ``len(decoder_channels) != len(encoder_channels)`` or fewer than two encoder maps.
    """

    def __init__(
        self,
        spatial_dims: int,
        encoder_channels: Sequence[int],
        decoder_channels: Sequence[int],
        dense: bool = True,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = ("batch", {"eps": 1e-3, "momentum": 0.1}),
        upsample: str = "nontrainable",
        interp_mode: str = "nearest",
    ) -> None:
        super().__init__()
        n = len(encoder_channels)
        if n < 2 or len(decoder_channels) != n:
            raise ValueError(
                f"need at least two encoder maps and one decoder width per map, got encoder_channels="
                f"{tuple(encoder_channels)}, decoder_channels={tuple(decoder_channels)}."
            )
        self.dense = dense

        def up_cat(in_chns: int, cat_chns: int, out_chns: int, halves: bool) -> UpCat:
            return UpCat(
                spatial_dims, in_chns, cat_chns, out_chns, act=act, norm=norm, bias=False, upsample=upsample,
                interp_mode=interp_mode, align_corners=None, halves=halves,
            )

        def width(i: int, j: int) -> int:
            return int(encoder_channels[i]) if j == 0 else int(decoder_channels[n - 2 - i])

        nodes, rows = [], []
        for j in range(1, n):
            for i in range(0, n - j):
                if not dense and i + j != n - 1:
                    continue
                cat = sum(width(i, k) for k in range(j)) if dense else width(i, 0)
                nodes.append(up_cat(width(i + 1, j - 1), cat, width(i, j), halves=True))
                rows.append(i)
        self.nodes = nn.ModuleList(nodes)
        self._rows = rows
        self.final = up_cat(width(0, n - 1), 0, int(decoder_channels[-1]), halves=False)
        self.out_channels = int(decoder_channels[-1])
        #: channels of the stride-2 nodes ``X[0][1..n-1]`` (the deep-supervision inputs)
        self.top_channels = width(0, 1)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """
        Args:
            features: the ``n`` encoder maps, shallow to deep (strides 2 ... 2^n).

        Returns:
            ``[out, X[0][1], ..., X[0][n-1]]``: the stride-1 output of the final block, then the stride-2 nodes of
            the top row (with ``dense=False`` only ``X[0][n-1]``).
        """
        grid: list[list[torch.Tensor]] = [[f] for f in features]
        for k, node in enumerate(self.nodes):
            i = self._rows[k]
            skip = torch.cat(grid[i], dim=1) if self.dense else grid[i][0]
            grid[i].append(node(grid[i + 1][-1], skip))
        top = grid[0]
        return [self.final(top[-1], None)] + top[1:]


#: modules of MONAI's EfficientNet that its feature forward never calls; removed so that every parameter trains
#: (DDP without ``find_unused_parameters``); their keys are skipped when encoder weights are loaded.
_UNUSED_ENCODER_HEADS = ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout", "_fc")


def _check_input(x: torch.Tensor, spatial_dims: int) -> None:
    if x.ndim != spatial_dims + 2:
        raise ValueError(f"JointSegClsNet expects (B, C, <{spatial_dims} spatial dims>), got shape {list(x.shape)}.")
    for d in x.shape[2:]:
        if d % 32 != 0:  # the encoder's total stride
            raise ValueError(f"JointSegClsNet needs spatial sizes divisible by 32, got shape {list(x.shape)}.")


@register_network(
    "joint_segcls",
    defaults={"encoder": "efficientnet-b6", "decoder": "unetplusplus", "num_classes": 3, "in_channels": 1},
    test_config={
        "kwargs": {"encoder": "efficientnet-b0", "num_classes": 3, "decoder_channels": (32, 16, 16, 8, 8)},
        "cases": [
            {"id": "b0-unetplusplus", "input": (2, 1, 64, 64), "output": {"seg": (2, 1, 64, 64), "logits": (2, 3)}},
            {
                "id": "b0-unet-channelweight",
                "kwargs": {"decoder": "unet", "spectral_weight": "channel"},
                "input": (2, 1, 64, 64),
                "output": {"seg": (2, 1, 64, 64), "logits": (2, 3)},
            },
            {
                "id": "resnet10-unetplusplus",
                "kwargs": {"encoder": "resnet10", "out_channels": 2},
                "input": (2, 1, 64, 64),
                "output": {"seg": (2, 2, 64, 64), "logits": (2, 3)},
            },
        ],
    },
)
class JointSegClsNet(nn.Module):
    """Encoder -> [Dual-Domain -> Latent Augmentor -> CBAM] bottleneck -> UNet++/UNet decoder + classifier.

    Output: ``{"seg": (B, out_channels, *spatial) mask logits, "logits": (B, num_classes)}``; in training mode with
    ``deep_supervision`` also ``"seg_deep"``: ``(B, n - 2, out_channels, *spatial)``, the logits of heads on the
    UNet++ nodes ``X[0][1..n-2]`` upsampled to the input size (``n = 5`` encoder maps). The input's spatial sizes
    must be multiples of 32. See the module docstring for how the labels reach the augmentor and for the targets
    of mixed samples.

    Example::

        >>> net = JointSegClsNet(encoder="efficientnet-b0", num_classes=3, class_counts=(133, 437, 210))
        >>> out = net(torch.rand(4, 1, 256, 256), labels=torch.tensor([0, 1, 2, 2]))
        >>> out["seg"].shape, out["logits"].shape
        (torch.Size([4, 1, 256, 256]), torch.Size([4, 3]))

    Args:
        num_classes: number of image classes (BUSI: normal 0, benign 1, malignant 2).
        spatial_dims: 2 (BUSI) or 3.
        in_channels: input channels (1 grayscale; 3 for RGB weights).
        out_channels: mask channels (1: lesion logits for a sigmoid).
        encoder: one of :func:`joint_encoder_names` (``"efficientnet-b6"`` as in the seed; ``"efficientnet-b0"``
            for a CPU demo; ``"resnet18"``, ...). Randomly initialised.
        encoder_weights: optional path to a local state dict for the encoder (never downloaded); anything
            :func:`networks.utils.extract_model_state` reads, ``encoder.`` prefixes stripped, keys must match.
        decoder: one of :data:`JOINT_DECODERS`.
        decoder_channels: five widths, deep to shallow, see :class:`NestedUNetDecoder`.
        deep_supervision: with ``decoder="unetplusplus"``, heads on the stride-2 nodes (training output
            ``"seg_deep"``).
        dual_domain: build the Dual-Domain block.
        spectral_weight: ``"fixed"`` (the seed) or ``"channel"`` (learnable per channel), see
            :class:`~networks.blocks.dual_domain.DualDomainBlock`.
        spectral_scale: the fixed scale or the initial learnable weight (1.1 in the seed).
        latent_augment: build the Latent Augmentor.
        class_counts: per-class counts of the training split; its minority classes (``n_c < N / K``) are
            augmented. Without it (and without ``minority``) nothing is augmented until
            :meth:`set_class_counts` is called.
        minority: explicit minority class indices instead of ``class_counts``.
        noise_std: the augmentor's noise standard deviation (0.05).
        mixup_alpha: the augmentor's Beta parameter (0.4).
        augment_seed: optional seed of the augmentor's random state.
        cbam: build the CBAM block.
        cbam_reduction: CBAM channel reduction (16).
        cbam_kernel_size: CBAM spatial kernel (7).
        dropout: dropout before the linear classifier (0: none).
        act: decoder activation.
        norm: decoder norm.
        encoder_bn_momentum: momentum of the encoder's BatchNorm running statistics (PyTorch's 0.1 by default); None
            keeps MONAI's (0.01 for EfficientNet, made for long ImageNet training: after a few hundred steps its
            running statistics are still far from the data's, and evaluation-mode outputs collapse to one class).

    Raises:
        ValueError: unknown ``encoder`` / ``decoder``, ``spatial_dims`` not 2 or 3, ``num_classes`` not positive,
            five ``decoder_channels`` not given, ``deep_supervision`` with the UNet decoder, both ``class_counts``
            and ``minority`` given.
        FileNotFoundError: ``encoder_weights`` does not exist.
    """

    def __init__(
        self,
        num_classes: int = 3,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        encoder: str = "efficientnet-b6",
        encoder_weights: str | None = None,
        decoder: str = "unetplusplus",
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        deep_supervision: bool = False,
        dual_domain: bool = True,
        spectral_weight: str = "fixed",
        spectral_scale: float = 1.1,
        latent_augment: bool = True,
        class_counts: Sequence[int] | None = None,
        minority: Sequence[int] | None = None,
        noise_std: float = 0.05,
        mixup_alpha: float = 0.4,
        augment_seed: int | None = None,
        cbam: bool = True,
        cbam_reduction: int = 16,
        cbam_kernel_size: int = 7,
        dropout: float = 0.0,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = ("batch", {"eps": 1e-3, "momentum": 0.1}),
        encoder_bn_momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got num_classes={num_classes}.")
        if encoder not in FLEXUNET_BACKBONE.register_dict:
            raise ValueError(f"unknown encoder {encoder!r}; available: {joint_encoder_names()}.")
        if decoder not in JOINT_DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; available: {list(JOINT_DECODERS)}.")
        if deep_supervision and decoder != "unetplusplus":
            raise ValueError(f"deep_supervision needs decoder='unetplusplus', got decoder={decoder!r}.")
        if class_counts is not None and minority is not None:
            raise ValueError("give class_counts (the training split's) or minority, not both.")
        entry = FLEXUNET_BACKBONE.register_dict[encoder]
        enc_channels = tuple(int(c) for c in entry["feature_channel"])
        if len(decoder_channels) != len(enc_channels):
            raise ValueError(
                f"decoder_channels needs {len(enc_channels)} widths (deep to shallow), got {tuple(decoder_channels)}."
            )
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        params = {**entry["parameter"], "spatial_dims": spatial_dims, "in_channels": in_channels, "pretrained": False}
        self.encoder = entry["type"](**params)
        for name in _UNUSED_ENCODER_HEADS:  # EfficientNet's classification head: unused by the feature forward
            if hasattr(self.encoder, name):
                delattr(self.encoder, name)
        self.encoder_name = encoder
        if encoder_bn_momentum is not None:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = float(encoder_bn_momentum)
        if encoder_weights is not None:
            self.load_encoder_weights(encoder_weights)

        bottleneck = enc_channels[-1]
        self.dual_domain = (
            DualDomainBlock(spatial_dims, bottleneck, spectral_scale, spectral_weight) if dual_domain else nn.Identity()
        )
        if minority is None and class_counts is not None:
            minority = minority_classes(counts=class_counts)
        self.augmentor = (
            LatentAugmentor(num_classes, minority or (), noise_std, mixup_alpha, augment_seed)
            if latent_augment
            else _NoAugment()
        )
        self.cbam = (
            ConvBlockAttention(spatial_dims, bottleneck, reduction=cbam_reduction, kernel_size=cbam_kernel_size)
            if cbam
            else nn.Identity()
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.Linear(bottleneck, num_classes)
        )
        self._pool_dims = [2 + i for i in range(spatial_dims)]

        self.decoder = NestedUNetDecoder(
            spatial_dims, enc_channels, decoder_channels, dense=decoder == "unetplusplus", act=act, norm=norm
        )
        self.seg_head = SegmentationHead(spatial_dims, self.decoder.out_channels, out_channels, kernel_size=3)
        n_deep = len(enc_channels) - 2 if deep_supervision else 0
        self.deep_heads = nn.ModuleList(
            SegmentationHead(spatial_dims, self.decoder.top_channels, out_channels, kernel_size=3, scale_factor=2.0)
            for _ in range(n_deep)
        )

    def load_encoder_weights(self, path: str) -> None:
        """Load a local state dict into the encoder (``encoder.`` prefixes stripped, EfficientNet's classification
        head ignored; every other key must match).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            RuntimeError: keys or shapes do not match (the message names the file).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"encoder weights file {path!r} does not exist (weights are never downloaded).")
        state = extract_model_state(torch.load(path, map_location="cpu", weights_only=True))
        state = {k.removeprefix("encoder."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k.split(".")[0] not in _UNUSED_ENCODER_HEADS}
        try:
            self.encoder.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"encoder weights {path!r} do not fit {self.encoder_name}: {e}") from e

    def set_class_counts(self, counts: Sequence[int] | np.ndarray) -> None:
        """Set the augmentor's minority classes from the training split's per-class counts (no-op without it)."""
        if isinstance(self.augmentor, LatentAugmentor):
            self.augmentor.set_class_counts(counts)

    def bottleneck(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The encoder maps with the deepest one replaced by ``cbam(augmentor(dual_domain(.), labels))``."""
        _check_input(x, self.spatial_dims)
        features = self.encoder(x)
        z = self.dual_domain(features[-1])
        z = self.augmentor(z, labels)
        features[-1] = self.cbam(z)
        return features

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """
        Args:
            x: images ``(B, in_channels, *spatial)``, spatial sizes multiples of 32.
            labels: class indices ``(B,)`` of a training batch, for the augmentor (ignored in eval mode).

        Returns:
            ``{"seg": (B, out_channels, *spatial), "logits": (B, num_classes)}`` (+ ``"seg_deep"`` in training with
            deep supervision).

        Raises:
            ValueError: wrong number of dims, or a spatial size not a multiple of 32.
        """
        features = self.bottleneck(x, labels)
        logits = self.classifier(features[-1].mean(dim=self._pool_dims))
        decoded = self.decoder(features)
        out = {"seg": self.seg_head(decoded[0]), "logits": logits}
        if self.training and len(self.deep_heads) > 0:
            deep: list[torch.Tensor] = []
            for k, head in enumerate(self.deep_heads):
                deep.append(head(decoded[k + 1]))
            out["seg_deep"] = torch.stack(deep, dim=1)
        return out


class _NoAugment(nn.Module):
    """Identity with the augmentor's signature (``latent_augment=False``)."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return z
