"""LA-Net: a ResNet classifier with a lesion-localisation branch and mask attention.

Fan et al., "Joint localization and classification of breast masses on ultrasound images using an
auxiliary attention-based framework", Medical Image Analysis 90 (2023) 102960.

The backbone is MONAI's :class:`monai.networks.nets.ResNet`, wrapped by :class:`ResNetFeatures` so that it
returns the four stage outputs ``f1..f4`` (strides 4, 8, 16, 32). For every stage a CBAM block (channel
attention, then spatial attention) and a 3x3 conv squeeze the features to one channel; the four one-channel
maps are resized to ``map_size = image_size // 32``, concatenated and fused by a 3x3 conv, BatchNorm and a
sigmoid into the lesion mask ``M``. The mask attention module (MAM) re-weights the last stage,
``f4' = f4 + M * f4``, before global average pooling and a linear classifier.

Output format: :class:`LANet` returns a dict ``{"logits": (B, num_classes), "mask": (B, 1, m, m)}`` with the
mask as probabilities in [0, 1]; :class:`ResNetClassifier` (the backbone-only baseline) returns the logits
tensor. :func:`split_outputs` accepts either and returns ``(logits, mask_or_None)``.

Both are registered in :mod:`networks.registry` on import, as ``"lanet"`` and ``"resnet_classifier"``. The
per-stage CBAM is the project's one CBAM, :class:`~networks.blocks.zoo.ConvBlockAttention`, with LA-Net's spatial
gate (``attention_num_conv`` convs of ``attention_kernel_size`` with batch norm).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from monai.networks.nets.resnet import ResNet

from networks.blocks.checks import check_spatial_dims
from networks.blocks.zoo import ConvBlockAttention
from networks.registry import register_network
from networks.utils import extract_model_state

__all__ = [
    "LANET_BACKBONES",
    "LANet",
    "ResNetClassifier",
    "ResNetFeatures",
    "split_outputs",
]

#: backbone name -> (block type, blocks per stage); stage channels are 64/128/256/512 times the block expansion.
LANET_BACKBONES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


class ResNetFeatures(ResNet):
    """MONAI ResNet (7x7 stride-2 stem + max pool) whose forward returns the four stage outputs.

    Layer names follow torchvision (``conv1``, ``bn1``, ``layer1..4``, ``downsample.0/1``; the downsample conv
    has no bias), so a converted torchvision state dict loads with :meth:`load_backbone_weights`.

    Args:
        backbone: one of :data:`LANET_BACKBONES` (``"resnet18"``, ``"resnet34"``, ``"resnet50"``).
        spatial_dims: 2 (the paper) or 3.
        in_channels: input channels (1 for grayscale ultrasound, 3 for RGB-pretrained weights).
        backbone_weights: optional path to a local state dict (never downloaded).

    Raises:
        ValueError: unknown ``backbone`` or ``spatial_dims``.
        FileNotFoundError: ``backbone_weights`` does not exist.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        spatial_dims: int = 2,
        in_channels: int = 1,
        backbone_weights: str | None = None,
    ) -> None:
        if backbone not in LANET_BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; available: {sorted(LANET_BACKBONES)}.")
        check_spatial_dims(spatial_dims, type(self).__name__)
        block, layers = LANET_BACKBONES[backbone]
        super().__init__(
            block=block,
            layers=list(layers),
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            feed_forward=False,
            bias_downsample=False,
        )
        self.backbone_name = backbone
        expansion = 4 if block == "bottleneck" else 1
        #: channels of f1..f4
        self.out_channels: tuple[int, ...] = tuple(c * expansion for c in (64, 128, 256, 512))
        del self.avgpool  # the heads pool themselves
        if backbone_weights is not None:
            self.load_backbone_weights(backbone_weights)

    def load_backbone_weights(self, path: str) -> None:
        """Load a local state dict (anything :func:`networks.utils.extract_model_state` reads: a plain dict, one
        under ``"state_dict"``/``"model"``/``"network"``, a DDP-saved one).

        ``backbone.`` prefixes are stripped and classifier keys (``fc.*``) ignored; every other
        key must match.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            RuntimeError: keys or shapes do not match this backbone (the message names the file).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"backbone weights file {path!r} does not exist (weights are never downloaded).")
        state = extract_model_state(torch.load(path, map_location="cpu", weights_only=True))
        cleaned = {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith("fc.")}
        try:
            self.load_state_dict(cleaned, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"backbone weights {path!r} do not fit {self.backbone_name}: {e}") from e

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """
        Args:
            x: images ``(B, in_channels, *spatial)``.

        Returns:
            ``[f1, f2, f3, f4]`` at strides 4, 8, 16, 32 with :attr:`out_channels` channels.
        """
        x = self.act(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]


class _StageMapHead(ConvBlockAttention):
    """CBAM (CAM then SAM, each optional; :class:`~networks.blocks.zoo.ConvBlockAttention` with LA-Net's spatial
    gate of ``num_conv`` convs ``2 -> 8 -> ... -> 1`` with batch norm) followed by a 3x3 conv squeezing the stage
    to one channel. Parameter names: ``cam.mlp.*``, ``sam.convs.*``, ``squeeze.*``."""

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        use_cam: bool,
        use_sam: bool,
        reduction_ratio: int,
        kernel_size: int,
        num_conv: int,
    ) -> None:
        super().__init__(
            spatial_dims,
            channels,
            reduction=reduction_ratio,
            kernel_size=kernel_size,
            spatial_norm="batch",
            spatial_convs=num_conv,
            spatial_hidden=8,
            use_cam=use_cam,
            use_sam=use_sam,
        )
        self.squeeze = Conv[Conv.CONV, spatial_dims](channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.squeeze(self.attend(x))


class _Classifier(nn.Module):
    """Global average pooling and a linear layer."""

    def __init__(self, spatial_dims: int, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(x).flatten(1)))


_LANET_DEFAULTS = {"num_classes": 2, "backbone": "resnet18", "spatial_dims": 2, "in_channels": 1}


@register_network(
    "resnet_classifier",
    defaults=_LANET_DEFAULTS,
    test_config={"kwargs": {"num_classes": 3}, "cases": [{"input": (2, 1, 32, 32), "output": (2, 3)}]},
)
class ResNetClassifier(nn.Module):
    """Backbone-only baseline: ResNet stages -> global average pooling -> linear (no mask branch).

    Args:
        num_classes: number of classes (2: benign, malignant).
        backbone: see :data:`LANET_BACKBONES`.
        spatial_dims: 2 (the paper) or 3.
        in_channels: input channels.
        backbone_weights: optional local state dict for the backbone.
        dropout: dropout before the linear layer (0 = none).
    """

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "resnet18",
        spatial_dims: int = 2,
        in_channels: int = 1,
        backbone_weights: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}.")
        self.backbone = ResNetFeatures(backbone, spatial_dims, in_channels, backbone_weights)
        self.classifier = _Classifier(spatial_dims, self.backbone.out_channels[-1], num_classes, dropout)
        nn.init.kaiming_normal_(self.classifier.fc.weight)
        nn.init.zeros_(self.classifier.fc.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last backbone stage ``f4`` ``(B, C4, H/32, W/32)`` (the Grad-CAM layer, ``backbone.layer4``)."""
        return self.backbone(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images ``(B, in_channels, H, W)``.

        Returns:
            logits ``(B, num_classes)``.
        """
        return self.classifier(self.features(x))


@register_network(
    "lanet",
    defaults=_LANET_DEFAULTS,
    test_config={
        "kwargs": {"num_classes": 3},
        "cases": [{"input": (2, 1, 64, 64), "output": {"logits": (2, 3), "mask": (2, 1, 2, 2)}}],
    },
)
class LANet(nn.Module):
    """ResNet + LA-Net localisation branch + mask attention module (Fan et al., MedIA 2023).

    Args:
        num_classes: number of classes (2: benign, malignant).
        backbone: see :data:`LANET_BACKBONES` (``"resnet18"`` or ``"resnet50"`` in the paper).
        spatial_dims: 2 (the paper) or 3.
        in_channels: input channels (1 grayscale, 3 for RGB weights).
        backbone_weights: optional path to a local backbone state dict (never downloaded).
        use_cam: channel attention in every stage's CBAM.
        use_sam: spatial attention in every stage's CBAM.
        use_mam: mask attention ``f4' = f4 + M * f4`` before the classifier; when off the classifier sees plain
            ``f4`` but the mask is still predicted.
        reduction_ratio: CAM bottleneck ratio r (C -> C/r -> C).
        attention_kernel_size: SAM conv kernel size.
        attention_num_conv: number of SAM convs.
        dropout: dropout before the linear layer (0 = none, as in the paper).

    Output: ``{"logits": (B, num_classes), "mask": (B, 1, m, m)}`` with ``m = image_size // 32`` and the mask
    a probability map. :meth:`features` gives the last backbone stage for Grad-CAM (target layer
    ``"backbone.layer4"``).

    Raises:
        ValueError: invalid ``backbone``, ``spatial_dims``, ``num_classes`` or attention settings.
        FileNotFoundError: ``backbone_weights`` does not exist.
    """

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "resnet18",
        spatial_dims: int = 2,
        in_channels: int = 1,
        backbone_weights: str | None = None,
        use_cam: bool = True,
        use_sam: bool = True,
        use_mam: bool = True,
        reduction_ratio: int = 16,
        attention_kernel_size: int = 3,
        attention_num_conv: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}.")
        if reduction_ratio < 1:
            raise ValueError(f"reduction_ratio must be >= 1, got {reduction_ratio!r}.")
        if attention_num_conv < 1 or attention_kernel_size < 1 or attention_kernel_size % 2 == 0:
            raise ValueError(
                "attention_num_conv must be >= 1 and attention_kernel_size odd, "
                f"got {attention_num_conv!r}, {attention_kernel_size!r}."
            )
        self.spatial_dims = spatial_dims
        self._mode: str = _INTERP[spatial_dims]
        self.use_cam, self.use_sam, self.use_mam = bool(use_cam), bool(use_sam), bool(use_mam)
        self.backbone = ResNetFeatures(backbone, spatial_dims, in_channels, backbone_weights)
        self.map_heads = nn.ModuleList(
            _StageMapHead(
                spatial_dims, c, self.use_cam, self.use_sam, reduction_ratio, attention_kernel_size, attention_num_conv
            )
            for c in self.backbone.out_channels
        )
        n = len(self.backbone.out_channels)
        self.fuse = nn.Sequential(Conv[Conv.CONV, spatial_dims](n, 1, 3, padding=1), Norm[Norm.BATCH, spatial_dims](1))
        self.classifier = _Classifier(spatial_dims, self.backbone.out_channels[-1], num_classes, dropout)
        self._init_lanet()

    def _init_lanet(self) -> None:
        """Kaiming-normal convs and linears, BN weight 1 / bias 0, for everything but the backbone."""
        for module in (self.map_heads, self.fuse, self.classifier):
            for m in module.modules():
                if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last backbone stage ``f4`` ``(B, C4, H/32, W/32)`` before MAM (module ``backbone.layer4``)."""
        return self.backbone(x)[-1]

    def predict_mask(self, feats: list[torch.Tensor], map_size: list[int]) -> torch.Tensor:
        """The mask ``M`` ``(B, 1, *map_size)`` in [0, 1] from the stage features ``[f1..f4]``."""
        maps: list[torch.Tensor] = []
        for i, head in enumerate(self.map_heads):
            maps.append(F.interpolate(head(feats[i]), size=map_size, mode=self._mode, align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(maps, dim=1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x: images ``(B, in_channels, H, W)``; ``H`` and ``W`` multiples of 32 in the paper.

        Returns:
            ``{"logits": (B, num_classes), "mask": (B, 1, H // 32, W // 32)}``, the mask in [0, 1].
        """
        feats = self.backbone(x)
        map_size = [max(s // 32, 1) for s in x.shape[2:]]
        mask = self.predict_mask(feats, map_size)
        f4 = feats[-1]
        if self.use_mam:
            m = mask
            if m.shape[2:] != f4.shape[2:]:
                m = F.interpolate(m, size=f4.shape[2:], mode=self._mode, align_corners=False)
            f4 = f4 + m * f4
        return {"logits": self.classifier(f4), "mask": mask}


def split_outputs(output: torch.Tensor | Mapping[str, torch.Tensor] | Sequence[torch.Tensor]):
    """``(logits, mask or None)`` from a network output: a logits tensor, an LA-Net dict or a tuple.

    Raises:
        TypeError: for any other output.
    """
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"], output.get("mask")
    if isinstance(output, (tuple, list)) and len(output) in (1, 2) and isinstance(output[0], torch.Tensor):
        return output[0], (output[1] if len(output) == 2 else None)
    raise TypeError(f"expected logits, a dict with 'logits' or a (logits, mask) tuple, got {type(output).__name__}.")
