"""RetinaNet for lesion detection on MONAI's detection app, without torchvision.

Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; MONAI's implementation
(:mod:`monai.apps.detection`): :class:`~monai.apps.detection.networks.retinanet_network.RetinaNet` (classification and
box-regression heads on every pyramid level) and
:class:`~monai.apps.detection.networks.retinanet_detector.RetinaNetDetector` (anchors, ATSS matching, hard-negative
sampling, losses, box decoding and selection).

- :func:`retinanet` builds the network: a MONAI ResNet (:class:`monai.networks.nets.ResNet`, 7x7 stride-2 stem and max
  pool) whose stages ``returned_layers`` feed MONAI's
  :class:`~monai.networks.blocks.feature_pyramid_network.FeaturePyramidNetwork` with a
  :class:`~monai.networks.blocks.feature_pyramid_network.LastLevelMaxPool` level on top
  (:class:`ResNetFPNFeatures`). MONAI's own ``resnet_fpn_feature_extractor`` needs torchvision (its
  ``IntermediateLayerGetter`` and layer freezing); this one does not, and keeps MONAI's state-dict names
  (``feature_extractor.body.conv1``, ``...body.layer1``, ``feature_extractor.fpn...``). Stage ``k`` has stride
  ``2 ** (k + 1)``, the extra level twice the last one's; inputs must be divisible by ``network.size_divisible``.
  The network's output is MONAI's ``{"classification": [per level (B, A * K, H_l, W_l)], "box_regression":
  [per level (B, A * 2 * spatial_dims, H_l, W_l)]}``; it compiles with ``torch.jit.script`` (``ckpt_export``).
- :func:`build_detector` wraps it in a :class:`RetinaNetDetector` with MONAI's
  :class:`~monai.apps.detection.utils.anchor_utils.AnchorGenerator` (one anchor size per level, aspect ratios given
  as height / width like torchvision's and the seed's Faster R-CNN), the ATSS matcher, the hard-negative sampler,
  target keys ``"box"`` / ``"label"`` and the box selector (score threshold, NMS, detections per image). In train mode
  ``detector(images, targets)`` returns ``{"classification": loss, "box_regression": loss}``; in eval mode one
  ``{"box": (N, 4), "label": (N,), "label_scores": (N,)}`` per image, boxes in MONAI's standard ``xyxy`` mode in
  array index order (``[row_min, col_min, row_max, col_max]`` of an ``(H, W)`` image, see :mod:`transforms.busi`).

Without torchvision MONAI's detector cannot train even with the ATSS matcher and hard-negative sampler: it tests
``isinstance(matcher, Matcher)`` (and ``isinstance(sampler, BalancedPositiveNegativeSampler)``) where those names are
unresolved optional imports of torchvision, and the test itself raises. Importing this module therefore replaces
the two unresolved names in :mod:`monai.apps.detection.networks.retinanet_detector` by placeholder classes that have
no instances (so the tests are simply False) and that raise MONAI's ``OptionalImportError`` when built (so
``set_regular_matcher`` / ``set_balanced_sampler`` still say that they need torchvision); with torchvision installed
nothing is replaced (:func:`patch_missing_torchvision`).

``retinanet`` is registered in :mod:`networks.registry` as ``"retinanet"``.
"""

from __future__ import annotations

import os
import types
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.apps.detection.networks import retinanet_detector as _monai_detector
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGenerator
from monai.networks.blocks.feature_pyramid_network import (
    FeaturePyramidNetwork,
    LastLevelMaxPool,
)
from monai.networks.nets.resnet import ResNet
from monai.utils import OptionalImportError

from networks.blocks.checks import check_spatial_dims
from networks.registry import register_network
from networks.utils import extract_model_state

__all__ = [
    "RETINANET_DEPTHS",
    "ExportedRetinaNet",
    "ResNetFPNFeatures",
    "build_detector",
    "load_backbone_weights",
    "patch_missing_torchvision",
    "retinanet",
]

#: ResNet depth -> (block type, blocks per stage), as in :mod:`monai.networks.nets.resnet`.
RETINANET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

_STEM = ("conv1", "bn1", "act", "maxpool")
#: key prefixes of backbone weights files that are not part of the body's own names
_BACKBONE_PREFIXES = ("feature_extractor.body.", "backbone.body.", "body.", "backbone.", "encoder.")


def _torchvision_only(name: str) -> type:
    """A stand-in for torchvision's ``name``: no instance can exist, building one raises ``OptionalImportError``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OptionalImportError(f"{name} needs torchvision, which is not installed (use the ATSS matcher and the "
                                  "hard-negative sampler of MONAI).")

    return type(name, (), {"__init__": __init__, "__doc__": f"Placeholder of torchvision's {name} (not installed)."})


def patch_missing_torchvision() -> list[str]:
    """Make MONAI's ``RetinaNetDetector`` train without torchvision (see the module docstring).

    Replaces ``Matcher`` and ``BalancedPositiveNegativeSampler`` in
    :mod:`monai.apps.detection.networks.retinanet_detector` by placeholder classes when they are unresolved optional
    imports (torchvision missing); real classes are left alone. Idempotent; called when this module is imported.

    Returns:
        the names replaced by this call.
    """
    replaced = []
    for name in ("Matcher", "BalancedPositiveNegativeSampler"):
        if not isinstance(getattr(_monai_detector, name), type):
            setattr(_monai_detector, name, _torchvision_only(name))
            replaced.append(name)
    return replaced


patch_missing_torchvision()


class _ResNetBody(nn.ModuleDict):
    """The stem and the stages ``layer1 .. layer{max(returned_layers)}`` of a MONAI ResNet (later stages are not
    kept); forward returns the ``returned_layers`` outputs as ``{"0": ..., "1": ...}``."""

    def __init__(self, resnet: ResNet, returned_layers: Sequence[int]) -> None:
        names = [*_STEM, *(f"layer{k}" for k in range(1, max(returned_layers) + 1))]
        super().__init__(OrderedDict((n, getattr(resnet, n)) for n in names))
        self.return_names: dict[str, str] = {f"layer{k}": str(i) for i, k in enumerate(returned_layers)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, module in self.items():
            x = module(x)
            if name in self.return_names:
                out[self.return_names[name]] = x
        return out


class ResNetFPNFeatures(nn.Module):
    """MONAI ResNet stages + MONAI feature pyramid (+ a max-pooled extra level): the feature extractor of
    :func:`retinanet`, without torchvision.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        depth: ResNet depth, a key of :data:`RETINANET_DEPTHS`.
        returned_layers: ResNet stages (1..4, increasing) that feed the pyramid; the pyramid has
            ``len(returned_layers) + 1`` levels.
        fpn_channels: channels of every pyramid level (:attr:`out_channels`).
        block_inplanes: widths of the four stages before the block expansion (ResNet: 64, 128, 256, 512).
        conv1_stride: stride of the 7x7 stem convolution (2 as in ImageNet ResNets).

    Raises:
        ValueError: unknown ``depth``, ``returned_layers`` not increasing in 1..4, or bad widths.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        depth: int = 18,
        returned_layers: Sequence[int] = (1, 2, 3),
        fpn_channels: int = 256,
        block_inplanes: Sequence[int] = (64, 128, 256, 512),
        conv1_stride: int = 2,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, type(self).__name__)
        if int(depth) not in RETINANET_DEPTHS:
            raise ValueError(f"unknown ResNet depth {depth!r}; available: {sorted(RETINANET_DEPTHS)}.")
        layers = [int(k) for k in returned_layers]
        if not layers or layers != sorted(set(layers)) or layers[0] < 1 or layers[-1] > 4:
            raise ValueError(f"returned_layers must be increasing stage numbers in 1..4, got {returned_layers!r}.")
        if len(block_inplanes) != 4 or min(block_inplanes) < 1:
            raise ValueError(f"block_inplanes needs 4 positive widths, got {block_inplanes!r}.")
        block, blocks = RETINANET_DEPTHS[int(depth)]
        resnet = ResNet(
            block=block,
            layers=list(blocks),
            block_inplanes=[int(c) for c in block_inplanes],
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=conv1_stride,
            feed_forward=False,
            bias_downsample=False,  # torchvision / MedicalNet names and shapes
        )
        expansion = 4 if block == "bottleneck" else 1
        self.spatial_dims = spatial_dims
        self.depth = int(depth)
        self.returned_layers = tuple(layers)
        self.body = _ResNetBody(resnet, layers)
        self.in_channels_list = [int(block_inplanes[k - 1]) * expansion for k in layers]
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=self.in_channels_list,
            out_channels=fpn_channels,
            extra_blocks=LastLevelMaxPool(spatial_dims),
        )
        self.out_channels = int(fpn_channels)
        #: pyramid levels (the returned stages and the pooled one)
        self.num_levels = len(layers) + 1
        #: total stride of each level
        self.strides = tuple(conv1_stride * 2 ** k for k in layers) + (conv1_stride * 2 ** (layers[-1] + 1),)
        self.frozen_body = False

    def freeze(self, body: bool = True, fpn: bool = False) -> None:
        """Stop training the ResNet body (weights and BatchNorm statistics: its BatchNorm layers stay in eval mode in
        :meth:`train`) and optionally the pyramid's convolutions, as the seed's Faster R-CNN froze both."""
        for p in self.body.parameters():
            p.requires_grad_(not body)
        for p in self.fpn.parameters():
            p.requires_grad_(not fpn)
        self.frozen_body = bool(body)
        self.train(self.training)

    def train(self, mode: bool = True) -> ResNetFPNFeatures:
        super().train(mode)
        if self.frozen_body:
            self.body.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Args:
            x: images ``(B, in_channels, *spatial)``, spatial sizes divisible by the largest stride.

        Returns:
            ``{"0": ..., "pool": ...}``, ``num_levels`` maps ``(B, out_channels, *spatial / stride)``, finest first.
        """
        return self.fpn(self.body(x))


def load_backbone_weights(features: ResNetFPNFeatures, path: str) -> list[str]:
    """Load a local ResNet state dict into the body of ``features`` (weights are never downloaded).

    Accepted: a MONAI ResNet / MedicalNet or torchvision-style state dict (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ``...downsample.0``; the same names in MONAI and torchvision), also nested under ``state_dict`` / ``model`` /
    ``network``, saved from ``DataParallel`` (``module.``), or prefixed by ``backbone.`` / ``body.`` /
    ``feature_extractor.body.`` (a detector's checkpoint). The classifier (``fc.*``) and stages the body does not keep
    are ignored. A 3-channel stem loaded into a 1-channel network is summed over its input channels.

    Args:
        features: the feature extractor whose ``body`` receives the weights.
        path: the local file.

    Returns:
        the ignored keys.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: body weights missing from the file, or of the wrong shape (naming the file and the keys).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights {path!r} do not exist (weights are never downloaded).")
    state = extract_model_state(torch.load(path, map_location="cpu", weights_only=True))
    for prefix in _BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    own = features.body.state_dict()
    ignored = sorted(k for k in state if k not in own)
    loaded = {k: v for k, v in state.items() if k in own}
    stem = loaded.get("conv1.weight")
    if stem is not None and stem.shape[1] == 3 and own["conv1.weight"].shape[1] == 1:
        loaded["conv1.weight"] = stem.sum(dim=1, keepdim=True)
    missing = sorted(k for k in own if k not in loaded and not k.endswith("num_batches_tracked"))
    wrong = sorted(f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in loaded.items()
                   if v.shape != own[k].shape)
    if missing or wrong:
        raise RuntimeError(
            f"pretrained weights {path!r} do not fit a ResNet{features.depth} body: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, wrong shapes {wrong[:8]}."
        )
    features.body.load_state_dict(loaded, strict=False)
    return ignored


_RETINANET_TEST = {
    "kwargs": {"depth": 10, "fpn_channels": 8, "block_inplanes": (8, 16, 16, 16)},
    "cases": [
        {
            "id": "2d",
            "input": (2, 3, 64, 64),
            "output": {
                "classification": [(2, 3, 16, 16), (2, 3, 8, 8), (2, 3, 4, 4), (2, 3, 2, 2)],
                "box_regression": [(2, 12, 16, 16), (2, 12, 8, 8), (2, 12, 4, 4), (2, 12, 2, 2)],
            },
        },
        {
            "id": "3d",
            "kwargs": {"spatial_dims": 3, "in_channels": 1, "num_classes": 2, "returned_layers": (1, 2)},
            "input": (1, 1, 32, 32, 32),
            "output": {
                "classification": [(1, 6, 8, 8, 8), (1, 6, 4, 4, 4), (1, 6, 2, 2, 2)],
                "box_regression": [(1, 18, 8, 8, 8), (1, 18, 4, 4, 4), (1, 18, 2, 2, 2)],
            },
        },
    ],
}


@register_network("retinanet", defaults={"spatial_dims": 2, "in_channels": 3, "num_classes": 1},
                  test_config=_RETINANET_TEST)
def retinanet(
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1,
    depth: int = 18,
    returned_layers: Sequence[int] = (1, 2, 3),
    fpn_channels: int = 256,
    num_anchors: int = 3,
    pretrained_path: str | None = None,
    freeze_backbone: bool = False,
    freeze_fpn: bool = False,
    block_inplanes: Sequence[int] = (64, 128, 256, 512),
) -> RetinaNet:
    """MONAI's RetinaNet on a MONAI ResNet + feature pyramid (:class:`ResNetFPNFeatures`).

    Args:
        spatial_dims: 2 (ultrasound frames) or 3.
        in_channels: image channels (3: the seed's stacked grayscale; 1 by config).
        num_classes: object classes without the background (1: lesion).
        depth: ResNet depth, a key of :data:`RETINANET_DEPTHS` (10, 18, 34, 50, 101, 152).
        returned_layers: ResNet stages feeding the pyramid (``(1, 2, 3, 4)``: five levels, strides 4..64, the
            seed's ResNet50-FPN levels for anchors 32..512).
        fpn_channels: channels of the pyramid levels and the heads (a multiple of 8: the heads' GroupNorm).
        num_anchors: anchors per location (anchor sizes per level x aspect ratios of :func:`build_detector`).
        pretrained_path: optional local ResNet weights for the body (:func:`load_backbone_weights`).
        freeze_backbone: freeze the ResNet body (weights and BatchNorm statistics).
        freeze_fpn: freeze the pyramid's convolutions too (the seed froze body and FPN and trained the heads).
        block_inplanes: stage widths before the block expansion (narrower for tiny test networks).

    Returns:
        the network; its ``size_divisible`` is the largest pyramid stride.

    Raises:
        ValueError: bad ``num_classes``, ``num_anchors`` or ``fpn_channels`` (and see :class:`ResNetFPNFeatures`).
    """
    if int(num_classes) < 1 or int(num_anchors) < 1:
        raise ValueError(f"num_classes and num_anchors must be >= 1, got {num_classes!r} and {num_anchors!r}.")
    if int(fpn_channels) < 8 or int(fpn_channels) % 8:
        raise ValueError(f"fpn_channels must be a positive multiple of 8 (GroupNorm of 8 groups), got {fpn_channels!r}.")
    features = ResNetFPNFeatures(spatial_dims, in_channels, depth, returned_layers, fpn_channels, block_inplanes)
    if pretrained_path:
        load_backbone_weights(features, pretrained_path)
    if freeze_backbone or freeze_fpn:
        features.freeze(body=bool(freeze_backbone), fpn=bool(freeze_fpn))
    return RetinaNet(
        spatial_dims=spatial_dims,
        num_classes=int(num_classes),
        num_anchors=int(num_anchors),
        feature_extractor=features,
        size_divisible=features.strides[-1],
    )


def _anchor_levels(anchor_sizes: Sequence, num_levels: int | None) -> tuple[tuple[int, ...], ...]:
    sizes = tuple(tuple(int(s) for s in (level if isinstance(level, Sequence) else (level,))) for level in anchor_sizes)
    if not sizes or any(not level or min(level) < 1 for level in sizes):
        raise ValueError(f"anchor_sizes needs positive sizes for every pyramid level, got {anchor_sizes!r}.")
    if num_levels is not None and len(sizes) != num_levels:
        raise ValueError(f"anchor_sizes has {len(sizes)} levels but the network has {num_levels} pyramid levels "
                         f"(len(returned_layers) + 1), got anchor_sizes={anchor_sizes!r}.")
    return sizes


class ExportedRetinaNet(nn.Module):
    """An exported RetinaNet (a TorchScript or ONNX file, as ``pipelines.predictors.load_exported_network`` loads it) that MONAI's ``RetinaNetDetector`` can run: the detector reads
    ``spatial_dims``, ``num_classes``, ``num_anchors``, ``size_divisible``, ``cls_key``, ``box_reg_key`` (and
    :func:`build_detector` the number of pyramid levels) from its network, which an exported file does not carry, so
    they are copied from ``template``, the eager network of the same settings (its weights are not used). Anchors, box
    decoding and non-maximum suppression stay in the detector, in eager PyTorch.

    Args:
        exported: the loaded file; called on ``(B, C, H, W)`` it returns ``{cls_key: [per level], box_reg_key: [per
            level]}`` (TorchScript keeps the eager structure; ``OnnxNetwork`` with ``output_keys=[cls_key,
            box_reg_key]`` rebuilds it).
        template: a :func:`retinanet` of the exported network's settings.

    Raises:
        ValueError: ``exported`` returns something else (checked at each call, naming what came back).
    """

    def __init__(self, exported: nn.Module, template: nn.Module) -> None:
        super().__init__()
        self.exported = exported
        for name in ("spatial_dims", "num_classes", "num_anchors", "size_divisible", "cls_key", "box_reg_key"):
            setattr(self, name, getattr(template, name))
        levels = getattr(getattr(template, "feature_extractor", None), "num_levels", None)
        self.feature_extractor = types.SimpleNamespace(num_levels=levels)

    def forward(self, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """
        Args:
            images: ``(B, C, H, W)``, the shape the file was exported for (ONNX files keep it fixed).

        Returns:
            ``{cls_key: [(B, num_anchors * num_classes, h_l, w_l)], box_reg_key: [(B, num_anchors * 4, h_l, w_l)]}``.
        """
        out = self.exported(images)
        if not isinstance(out, dict) or not {self.cls_key, self.box_reg_key} <= set(out):
            raise ValueError(
                f"the exported RetinaNet must return {{{self.cls_key!r}: [...], {self.box_reg_key!r}: [...]}}, got "
                f"{type(out).__name__}{sorted(out) if isinstance(out, dict) else ''}; load an ONNX file with "
                f"output_keys=[{self.cls_key!r}, {self.box_reg_key!r}]."
            )
        return {self.cls_key: list(out[self.cls_key]), self.box_reg_key: list(out[self.box_reg_key])}


def build_detector(
    network: nn.Module,
    anchor_sizes: Sequence[int | Sequence[int]],
    aspect_ratios: Sequence[float] = (0.5, 0.75, 1.0),
    atss_num_candidates: int = 4,
    center_in_gt: bool = False,
    batch_size_per_image: int = 64,
    positive_fraction: float = 0.3,
    min_neg: int = 16,
    pool_size: float = 20,
    score_thresh: float = 0.05,
    topk_candidates_per_level: int = 1000,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    box_key: str = "box",
    label_key: str = "label",
    debug: bool = False,
) -> RetinaNetDetector:
    """MONAI's ``RetinaNetDetector`` around ``network`` with anchors, ATSS matcher, hard-negative sampler and box
    selector set.

    Anchors (MONAI ``AnchorGenerator``, ``indexing="ij"``): level ``l`` gets the sizes ``anchor_sizes[l]`` (one size or
    several) times every aspect ratio, centred on the level's grid. ``aspect_ratios`` are height / width of the box in
    the image, as in torchvision and the seed (0.5: twice as wide as tall); MONAI's 2D generator takes the inverse for
    ``(H, W)`` arrays, so they are inverted here (anchors ``size / sqrt(r)`` wide and ``size * sqrt(r)`` tall).

    Args:
        network: a :func:`retinanet` (or any network MONAI's detector accepts).
        anchor_sizes: per pyramid level an anchor size in pixels (or a sequence of sizes), e.g. the seed's
            ``(32, 64, 128, 256, 512)`` on five levels.
        aspect_ratios: height / width ratios of the anchors (2D).
        atss_num_candidates, center_in_gt: ATSS matcher (MONAI ``set_atss_matcher``).
        batch_size_per_image, positive_fraction, min_neg, pool_size: hard-negative sampler
            (MONAI ``set_hard_negative_sampler``).
        score_thresh, topk_candidates_per_level, nms_thresh, detections_per_img: the box selector at inference.
        box_key, label_key: target keys (and output keys; scores under ``label_key + "_scores"``).
        debug: MONAI's matcher / sampler diagnostics.

    Returns:
        the detector (``detector.network`` is ``network``).

    Raises:
        ValueError: the anchors do not fit the network (number of levels, anchors per location) or bad ratios.
    """
    features = getattr(network, "feature_extractor", None)
    sizes = _anchor_levels(anchor_sizes, getattr(features, "num_levels", None))
    ratios = tuple(float(r) for r in aspect_ratios)
    if not ratios or min(ratios) <= 0:
        raise ValueError(f"aspect_ratios must be positive height / width ratios, got {aspect_ratios!r}.")
    spatial_dims = int(getattr(network, "spatial_dims", 2))
    if spatial_dims != 2:
        raise ValueError(f"build_detector sets 2D anchors; the network has spatial_dims={spatial_dims}.")
    per_location = len(sizes[0]) * len(ratios)
    if any(len(level) != len(sizes[0]) for level in sizes) or per_location != getattr(network, "num_anchors",
                                                                                        per_location):
        raise ValueError(
            f"{len(sizes[0])} anchor size(s) x {len(ratios)} aspect ratios per location on every level must equal "
            f"the network's num_anchors={getattr(network, 'num_anchors', None)} (anchor_sizes={anchor_sizes!r})."
        )
    inverse = tuple(1.0 / r for r in ratios)  # MONAI's 2D ratio: extent along axis 1 / along axis 0
    generator = AnchorGenerator(sizes=sizes, aspect_ratios=(inverse,) * len(sizes), indexing="ij")
    detector = RetinaNetDetector(network=network, anchor_generator=generator, debug=debug)
    detector.set_atss_matcher(num_candidates=int(atss_num_candidates), center_in_gt=bool(center_in_gt))
    detector.set_hard_negative_sampler(
        batch_size_per_image=int(batch_size_per_image), positive_fraction=float(positive_fraction),
        min_neg=int(min_neg), pool_size=float(pool_size),
    )
    detector.set_target_keys(box_key=box_key, label_key=label_key)
    detector.set_box_selector_parameters(
        score_thresh=float(score_thresh), topk_candidates_per_level=int(topk_candidates_per_level),
        nms_thresh=float(nms_thresh), detections_per_img=int(detections_per_img),
    )
    return detector
