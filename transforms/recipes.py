"""Dataset transform builders ("recipes"), one place for every bundle's pre-processing.

3D segmentation (BraTS, MALC, HVSMR): :func:`segmentation_transforms`. A bundle's YAML keeps the model-zoo keys
(``train#preprocessing``, ``validate#preprocessing``, ...) and fills them from these builders with its dataset's
settings, so a change to the recipe (say, the rotation range) is made here and reaches every bundle::

    train:
      preprocessing: "$transforms.recipes.segmentation_transforms('train', roi_size=@roi_size, label_mode='brats')"

The recipe is the PAM paper's: load, orient to RAS, z-score (per channel, or over the whole volume for MALC),
then for training pad/crop to the patch, random flips of the two in-plane axes (p 0.5 each; off for MALC, whose
left and right structures have different labels) and a random rotation by U(-10, 10) degrees about every axis
(p 0.5).

BUSI (LA-Net): :func:`busi_train_transforms`, :func:`busi_eval_transforms` (the paper's augmentations, applied to
image and mask alike).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    ConvertToMultiChannelBasedOnBratsClassesd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandFlipd,
    RandRotate90d,
    RandRotated,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSpatialCropd,
    ScaleIntensityRanged,
    SpatialPadd,
)

from .busi import (
    BoxesToMaskd,
    DilateMaskd,
    LoadBUSId,
    PartialAnnotationd,
    RandResizedCropd,
    ResizeShortSided,
)

__all__ = ["LABEL_MODES", "STAGES", "busi_eval_transforms", "busi_image_transforms", "busi_train_transforms", "segmentation_transforms"]


STAGES = ("train", "validate", "inference")


#: ``brats``: label map 0/1/2/4 -> 3 region channels (TC, WT, ET); ``labelmap``: keep one channel of class indices.
LABEL_MODES = ("brats", "labelmap")


def segmentation_transforms(
    stage: str,
    roi_size: Sequence[int] | None = None,
    label_mode: str = "labelmap",
    image_key: str = "image",
    label_key: str = "label",
    channel_wise_norm: bool = True,
    nonzero_norm: bool = True,
    flip_axes: Sequence[int] = (0, 1),
    flip_prob: float = 0.5,
    rotate_degrees: float = 10.0,
    rotate_prob: float = 0.5,
    track_meta: bool | None = None,
) -> Compose:
    """Build the pre-processing of one stage of the 3D segmentation recipe.

    Args:
        stage: ``"train"`` (with augmentation and patch crop), ``"validate"`` (whole volume, with label) or
            ``"inference"`` (whole volume, image only, meta data kept so ``Invertd`` can undo the orientation).
        roi_size: training patch size ``(x, y, z)``; required for ``"train"``.
        label_mode: one of :data:`LABEL_MODES`.
        image_key / label_key: data dictionary keys.
        channel_wise_norm: z-score each channel separately (BraTS, HVSMR) or all together (MALC).
        nonzero_norm: compute the z-score over non-zero voxels only (skull-stripped MRI) or over all voxels.
        flip_axes: spatial axes randomly flipped in training (``()`` disables flips).
        flip_prob: probability of each flip.
        rotate_degrees: maximum absolute rotation about each axis in training (0 disables).
        rotate_prob: probability of the rotation.
        track_meta: keep MONAI meta data on the outputs; default ``False`` for training (faster collation) and
            ``True`` otherwise (spacing for the metrics, affine for inversion).

    Returns:
        a MONAI ``Compose``.

    Raises:
        ValueError: for an unknown ``stage`` or ``label_mode``, or a training stage without ``roi_size``.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}.")
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}.")
    if stage == "train" and roi_size is None:
        raise ValueError("roi_size is required for the training stage.")
    if track_meta is None:
        track_meta = stage != "train"
    keys = [image_key] if stage == "inference" else [image_key, label_key]
    xforms: list = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS", labels=None),
    ]
    if stage != "inference" and label_mode == "brats":
        xforms.append(ConvertToMultiChannelBasedOnBratsClassesd(keys=label_key))
    xforms.append(NormalizeIntensityd(keys=image_key, nonzero=nonzero_norm, channel_wise=channel_wise_norm))
    xforms.append(EnsureTyped(keys=keys, dtype=torch.float32, track_meta=track_meta))
    if stage == "train":
        xforms += [
            SpatialPadd(keys=keys, spatial_size=roi_size),
            RandSpatialCropd(keys=keys, roi_size=roi_size, random_size=False),
        ]
        xforms += [RandFlipd(keys=keys, prob=flip_prob, spatial_axis=axis) for axis in flip_axes]
        if rotate_degrees > 0:
            angle = math.radians(rotate_degrees)
            label_interp = "nearest"
            xforms.append(
                RandRotated(
                    keys=keys,
                    range_x=angle,
                    range_y=angle,
                    range_z=angle,
                    prob=rotate_prob,
                    mode=["bilinear", label_interp],
                    padding_mode="zeros",
                )
            )
    return Compose(xforms)



def _weak_and_partial(
    use_boxes: bool, annotated_fraction: float | None, annotated_ids: Iterable[str] | None, seed: int
) -> list:
    steps: list = []
    if use_boxes:
        steps.append(BoxesToMaskd("mask"))
    if annotated_ids is not None or (annotated_fraction is not None and annotated_fraction < 1.0):
        fraction = 1.0 if annotated_fraction is None else annotated_fraction
        steps.append(PartialAnnotationd("mask", fraction=fraction, seed=seed, keep_ids=annotated_ids))
    return steps


def _finish() -> list:
    return [
        ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, clip=True),
        EnsureTyped(("image", "mask"), dtype=torch.float32, track_meta=False),
        DeleteItemsd(("masks", "boxes")),  # lists of varying length cannot be collated
    ]


def busi_train_transforms(
    image_size: int = 256,
    dilate: int = 0,
    use_boxes: bool = False,
    annotated_fraction: float | None = None,
    annotated_ids: Iterable[str] | None = None,
    partial_seed: int = 0,
    rotate_prob: float = 0.5,
    flip_prob: float = 0.5,
    crop_scale: Sequence[float] = (0.75, 1.0),
    crop_ratio: Sequence[float] = (0.75, 4.0 / 3.0),
    brightness: float = 0.2,
    contrast: float = 0.2,
    jitter_prob: float = 0.8,
) -> Compose:
    """LA-Net training pipeline for :func:`~pipelines.data.datalists.busi_datalist` items.

    Load (merge masks) -> [boxes replace masks] -> [partial annotation] -> rotate by 90/180/270 (``rotate_prob``)
    -> random resized crop to ``image_size`` (image bilinear, mask nearest-exact) -> dilate the mask by ``dilate``
    pixels of the ``image_size`` grid -> horizontal and vertical flips -> brightness (``v * (1 + f)``,
    ``|f| <= brightness``) and contrast (scaling about the mean, ``|f| <= contrast``) jitter of the image,
    clipped to [0, 255] -> [-1, 1].

    Returns a :class:`~monai.transforms.Compose` producing ``image`` ``(1, S, S)`` in [-1, 1], ``mask``
    ``(1, S, S)`` in {0, 1}, ``has_mask`` (int) and the item's other keys (``masks``/``boxes`` deleted).
    Randomness is seeded with ``Compose.set_random_state`` (MONAI datasets do it per worker).

    Args:
        image_size: output side S (256 or 512 in the paper).
        dilate: mask dilation radius d (0 = none).
        use_boxes: replace the masks by the filled ``boxes`` (weak labels; needs a ``box_file`` datalist).
        annotated_fraction: keep this fraction of the masks (seeded hash of the case id), None = all.
        annotated_ids: exact case ids that keep their masks (see
            :func:`partial_annotation_ids`); overrides ``annotated_fraction``.
        partial_seed: seed of the partial-annotation hash.
        rotate_prob: probability of a rotation (by 90, 180 or 270 degrees, uniformly).
        flip_prob: probability of each flip.
        crop_scale: area range of the random resized crop.
        crop_ratio: aspect-ratio range of the random resized crop.
        brightness: brightness jitter amplitude.
        contrast: contrast jitter amplitude.
        jitter_prob: probability of each jitter.
    """
    keys = ("image", "mask")
    steps: list = [LoadBUSId("image")]
    steps += _weak_and_partial(use_boxes, annotated_fraction, annotated_ids, partial_seed)
    steps += [
        RandRotate90d(keys, prob=rotate_prob, max_k=3, spatial_axes=(0, 1)),
        RandResizedCropd(
            keys, image_size, scale=crop_scale, ratio=crop_ratio, mode=("bilinear", "nearest-exact"),
            anti_aliasing=(True, False),
        ),
    ]
    if dilate:
        steps.append(DilateMaskd("mask", radius=dilate))
    steps += [
        RandFlipd(keys, prob=flip_prob, spatial_axis=1),  # horizontal (width axis)
        RandFlipd(keys, prob=flip_prob, spatial_axis=0),  # vertical
    ]
    if brightness > 0:
        steps.append(RandScaleIntensityd("image", factors=brightness, prob=jitter_prob))
    if contrast > 0:
        steps.append(RandScaleIntensityFixedMeand("image", factors=contrast, fixed_mean=True, prob=jitter_prob))
    return Compose(steps + _finish())


def busi_eval_transforms(
    image_size: int = 256,
    use_boxes: bool = False,
    annotated_fraction: float | None = None,
    annotated_ids: Iterable[str] | None = None,
    partial_seed: int = 0,
) -> Compose:
    """LA-Net evaluation pipeline: load -> resize the short side to ``image_size`` (image bilinear with
    anti-aliasing, mask nearest-exact) -> centre crop ``image_size`` -> [-1, 1]. Deterministic.

    The weak/partial options exist for evaluating on the training images with the training labels; test
    sets keep the defaults (the full masks). Output keys as :func:`busi_train_transforms`.
    """
    keys = ("image", "mask")
    steps: list = [LoadBUSId("image")]
    steps += _weak_and_partial(use_boxes, annotated_fraction, annotated_ids, partial_seed)
    steps += [
        ResizeShortSided(keys, image_size, mode=("bilinear", "nearest-exact"), anti_aliasing=(True, False)),
        CenterSpatialCropd(keys, roi_size=image_size),
    ]
    return Compose(steps + _finish())


def busi_image_transforms(image_size: int = 256, image_key: str = "image") -> Compose:
    """The image path of :func:`busi_eval_transforms` after loading, keeping the meta data:
    short side -> ``image_size`` (bilinear, anti-aliased), centre crop, [0, 255] -> [-1, 1].

    The recipe drops the meta data (``track_meta=False``, for collation); a predictor needs it to invert the
    geometry, hence this image-only variant (tested to give the recipe's image exactly).
    """
    return Compose([
        ResizeShortSided(image_key, image_size, mode="bilinear", anti_aliasing=True),
        CenterSpatialCropd(image_key, roi_size=image_size),
        ScaleIntensityRanged(image_key, a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, clip=True),
        EnsureTyped(image_key, dtype=torch.float32, track_meta=True),
    ])
