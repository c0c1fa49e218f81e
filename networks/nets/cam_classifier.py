"""A classifier split at its Grad-CAM layer: backbone features, then global average pooling and a linear layer.

Wu, Japkowicz, Gilbert, Corizzo, "Localisation-aware classification with a segmentation-driven Grad-CAM loss",
Data Mining and Knowledge Discovery 40(4):47, 2026, train chest X-ray classifiers with an attention loss on the
Grad-CAM of the target class at the last feature stage. :class:`CAMClassifier` exposes that stage:
:meth:`~CAMClassifier.features` returns it, :meth:`~CAMClassifier.classify` maps it to logits, and
``forward = classify(features(x))`` returns the logits only (so TorchScript export and shape checks see a plain
classifier). :attr:`~CAMClassifier.cam_layer` names the module whose output is the Grad-CAM layer, for hook-based
Grad-CAM (figures, predictors, DDP training through the wrapped module's ``forward``).

Backbones are MONAI's (:data:`CAM_BACKBONES`): ``densenet121`` (:class:`monai.networks.nets.DenseNet121`),
``resnet50`` / ``resnet34`` / ``resnet18`` / ``resnet10`` (:class:`monai.networks.nets.ResNet`, torchvision's
7x7 stride-2 stem and bias-free downsampling by default) and ``efficientnet-b0``
(:class:`monai.networks.nets.EfficientNetBN`). Weights are never downloaded: ``pretrained_path`` loads a local state
dict into the backbone. Registered as ``"cam_classifier"`` in :mod:`networks.registry`.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
from monai.networks.layers.factories import Pool
from monai.networks.nets import DenseNet121, EfficientNetBN, ResNet

from networks.blocks.checks import check_spatial_dims
from networks.registry import register_network
from networks.utils import extract_model_state

__all__ = ["CAM_BACKBONES", "CAMClassifier"]

#: ResNet depth -> (block type, blocks per stage) of MONAI's ``resnet10`` ... ``resnet50``.
_RESNETS: dict[str, tuple[str, list[int]]] = {
    "resnet10": ("basic", [1, 1, 1, 1]),
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}

#: Backbone names :class:`CAMClassifier` accepts.
CAM_BACKBONES: tuple[str, ...] = ("densenet121", "efficientnet-b0", *_RESNETS)

#: First convolution weight of each backbone family (adapted to 1 input channel when loading 3-channel weights).
_FIRST_CONV = {"densenet121": "features.conv0.weight", "efficientnet-b0": "_conv_stem.weight", "resnet": "conv1.weight"}
#: Classifier keys of the full MONAI / torchvision networks, ignored when loading backbone weights.
_HEAD_PREFIXES = ("class_layers.", "classifier.", "fc.", "_fc.", "head.")
#: torchvision DenseNet names ``denselayerN.norm1`` where MONAI has ``denselayerN.layers.norm1``.
_TORCHVISION_DENSE = re.compile(
    r"^(.*denselayer\d+)(\.(?:norm|relu|conv))\.?((?:[12])\."
    r"(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _few(keys: list[str], limit: int = 5) -> str:
    """``[k1, k2, ...]`` with at most ``limit`` entries and the count of the rest."""
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + more + "]"


class _EfficientNetFeatures(nn.Module):
    """EfficientNet stem, blocks and head convolution (everything before the pooling), with MONAI's parameter
    names, so an ``EfficientNetBN`` state dict loads unchanged."""

    def __init__(self, net: EfficientNetBN) -> None:
        super().__init__()
        net.set_swish(memory_efficient=False)  # the plain swish scripts; the memory-efficient one does not
        self._conv_stem_padding = net._conv_stem_padding
        self._conv_stem = net._conv_stem
        self._bn0 = net._bn0
        self._blocks = net._blocks
        self._conv_head_padding = net._conv_head_padding
        self._conv_head = net._conv_head
        self._bn1 = net._bn1
        self._swish = net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(self._conv_stem_padding(x))))
        x = self._blocks(x)
        return self._swish(self._bn1(self._conv_head(self._conv_head_padding(x))))


def _build_backbone(
    backbone: str, spatial_dims: int, in_channels: int, backbone_kwargs: dict[str, Any]
) -> tuple[nn.Module, int]:
    """The feature extractor of ``backbone`` and its output channels."""
    if backbone == "densenet121":
        net = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, **backbone_kwargs)
        channels = net.class_layers.out.in_features
        return nn.Sequential(OrderedDict([("features", net.features), ("relu", nn.ReLU())])), channels
    if backbone == "efficientnet-b0":
        net = EfficientNetBN(
            "efficientnet-b0", pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1,
            **backbone_kwargs,
        )
        return _EfficientNetFeatures(net), net._fc.in_features
    block, layers = _RESNETS[backbone]
    options = {"conv1_t_size": 7, "conv1_t_stride": 2, "bias_downsample": False, **backbone_kwargs}
    net = ResNet(block, layers, [64, 128, 256, 512], spatial_dims=spatial_dims, n_input_channels=in_channels,
                 num_classes=1, **options)
    stages = [("conv1", net.conv1), ("bn1", net.bn1), ("act", net.act)]
    if not net.no_max_pool:
        stages.append(("maxpool", net.maxpool))
    stages += [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
    return nn.Sequential(OrderedDict(stages)), net.fc.in_features


@register_network(
    "cam_classifier",
    defaults={"num_classes": 2, "backbone": "densenet121", "spatial_dims": 2, "in_channels": 1},
    test_config={
        "kwargs": {"num_classes": 3},
        "cases": [
            {"id": "2d-resnet10", "kwargs": {"backbone": "resnet10"}, "input": (2, 1, 32, 32), "output": (2, 3)},
            {"id": "3d-resnet10", "kwargs": {"backbone": "resnet10", "spatial_dims": 3},
             "input": (2, 1, 32, 32, 32), "output": (2, 3)},
            {"id": "2d-densenet121", "kwargs": {"backbone": "densenet121"}, "input": (2, 1, 32, 32),
             "output": (2, 3)},
            {"id": "2d-resnet50", "kwargs": {"backbone": "resnet50"}, "input": (2, 1, 32, 32), "output": (2, 3)},
            {"id": "2d-efficientnet-b0", "kwargs": {"backbone": "efficientnet-b0"}, "input": (2, 1, 32, 32),
             "output": (2, 3)},
        ],
    },
)
class CAMClassifier(nn.Module):
    """A MONAI backbone, global average pooling and a linear layer, split at the Grad-CAM layer.

    Example::

        net = CAMClassifier(num_classes=2, backbone="densenet121")
        features = net.features(x)        # (B, 1024, H/32, W/32), the Grad-CAM layer
        logits = net.classify(features)   # (B, 2); net(x) gives the same

    Args:
        num_classes: number of classes (class 0 = No Finding in the chest X-ray tasks).
        backbone: one of :data:`CAM_BACKBONES`: ``"densenet121"`` (default), ``"resnet50"``,
            ``"efficientnet-b0"``, or the small ``"resnet34"``, ``"resnet18"``, ``"resnet10"``.
        spatial_dims: 2 (radiographs) or 3.
        in_channels: input channels (1 for radiographs).
        pretrained_path: optional local state dict file loaded into the backbone (see
            :meth:`load_backbone_weights`); nothing is ever downloaded.
        backbone_kwargs: further arguments of the MONAI backbone, e.g. ``widen_factor`` or ``no_max_pool`` of a
            ResNet (whose defaults here are ``conv1_t_size=7``, ``conv1_t_stride=2``, ``bias_downsample=False``),
            ``growth_rate`` / ``init_features`` of DenseNet121, ``norm`` of EfficientNet.

    Raises:
        ValueError: unknown ``backbone``, bad ``num_classes`` or ``spatial_dims``.
        FileNotFoundError, RuntimeError: see :meth:`load_backbone_weights`.
    """

    #: dotted name of the module whose output is :meth:`features` (the Grad-CAM layer).
    cam_layer: str = "backbone"

    def __init__(
        self,
        num_classes: int = 2,
        backbone: str = "densenet121",
        spatial_dims: int = 2,
        in_channels: int = 1,
        pretrained_path: str | None = None,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}.")
        name = str(backbone).lower()
        if name not in CAM_BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; available: {list(CAM_BACKBONES)}.")
        check_spatial_dims(spatial_dims, type(self).__name__)
        self.backbone_name = name
        self.in_channels = int(in_channels)
        self.backbone, channels = _build_backbone(name, spatial_dims, self.in_channels, dict(backbone_kwargs))
        #: channels of the Grad-CAM layer
        self.feature_channels = int(channels)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.fc = nn.Linear(self.feature_channels, int(num_classes))
        if pretrained_path is not None:
            self.load_backbone_weights(pretrained_path)

    def load_backbone_weights(self, path: str) -> None:
        """Load a local state dict into the backbone.

        Accepted: the state dict of the MONAI network of the same backbone (``DenseNet121``, ``ResNet``,
        ``EfficientNetBN``, e.g. saved with ``torch.save(net.state_dict(), path)``), of a torchvision
        ``densenet121`` / ``resnet*`` (DenseNet layer names are converted), or of a :class:`CAMClassifier`;
        nested under ``"model"`` / ``"state_dict"`` / ``"network"`` or DDP-prefixed is fine. Classifier keys
        (``fc``, ``_fc``, ``class_layers``, ``classifier``) are ignored; every backbone key must be present with
        its shape. A 3-channel first convolution loaded into a 1-channel network is summed over its RGB weights.

        Args:
            path: the state dict file.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            RuntimeError: keys or shapes do not fit this backbone (the message names the file).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"backbone weights file {path!r} does not exist (weights are never downloaded).")
        try:
            state = extract_model_state(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:
            raise RuntimeError(f"backbone weights {path!r} cannot be read as a state dict: {e}") from e
        cleaned: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            key = key.removeprefix("backbone.")
            if key.startswith(_HEAD_PREFIXES):
                continue
            if self.backbone_name == "densenet121":
                key = _TORCHVISION_DENSE.sub(r"\1.layers\2\3", key)
            cleaned[key] = value
        first = _FIRST_CONV.get(self.backbone_name, _FIRST_CONV["resnet"])
        weight = cleaned.get(first)
        if weight is not None and weight.ndim >= 2 and weight.shape[1] == 3 and self.in_channels == 1:
            cleaned[first] = weight.sum(dim=1, keepdim=True)
        own = self.backbone.state_dict()
        shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in cleaned.items()
                  if k in own and v.shape != own[k].shape]
        problems = [
            f"missing keys {_few(sorted(set(own) - set(cleaned)))}",
            f"unexpected keys {_few(sorted(set(cleaned) - set(own)))}",
            f"shape mismatches {_few(shapes)}",
        ]
        problems = [p for p in problems if not p.endswith(" []")]
        if problems:
            raise RuntimeError(f"backbone weights {path!r} do not fit the {self.backbone_name} backbone: "
                               f"{'; '.join(problems)}.")
        self.backbone.load_state_dict(cleaned, strict=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature stage (the Grad-CAM layer, output of :attr:`cam_layer`).

        Args:
            x: images ``(B, in_channels, *spatial)``.

        Returns:
            ``(B, feature_channels, *spatial / 32)``.
        """
        return self.backbone(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of the features ``(B, feature_channels, *spatial)``: global average pooling
        and the linear layer."""
        return self.fc(self.pool(features).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images ``(B, in_channels, *spatial)``.

        Returns:
            logits ``(B, num_classes)``.
        """
        return self.classify(self.features(x))
