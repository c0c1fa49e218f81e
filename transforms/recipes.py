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

Chest X-ray lung masks (``cxr_lung_segmentation``): :func:`cxr_lung_train_transforms`, :func:`cxr_lung_eval_transforms`
and the predictor's image-only :func:`cxr_lung_image_transforms`.

Chest X-ray classification with the Grad-CAM attention loss (``cxr_attention_classification``):
:func:`cxr_classification_train_transforms`, :func:`cxr_classification_eval_transforms` (image, class region from
the lung box) and the predictor's image-only :func:`cxr_classification_image_transforms`.
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
    MapTransform,
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
__all__ += ["cxr_lung_eval_transforms", "cxr_lung_image_transforms", "cxr_lung_train_transforms"]
__all__ += ["cxr_classification_eval_transforms", "cxr_classification_image_transforms",
            "cxr_classification_train_transforms"]


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


# --------------------------------------------------------------------------------------------
# chest X-ray lung segmentation (cxr_lung_segmentation)
# --------------------------------------------------------------------------------------------
def _cxr_lung_load(image_size: int) -> list:
    """Load (the ``label`` mask files merged with a logical or) -> resize to ``image_size`` x ``image_size`` (image
    bilinear with anti-aliasing, mask by area then thresholded at 0.5)."""
    from monai.transforms import AsDiscreted, Resized

    from .busi import LoadBUSId

    size = (int(image_size), int(image_size))
    return [
        LoadBUSId("image", masks_key="label", mask_key="label", has_mask_key="has_mask"),
        DeleteItemsd("has_mask"),
        Resized(("image", "label"), size, mode=("bilinear", "area"), anti_aliasing=(True, False)),
        AsDiscreted("label", threshold=0.5),
    ]


def _cxr_lung_finish(keys: Sequence[str], track_meta: bool) -> list:
    return [
        NormalizeIntensityd("image", nonzero=False, channel_wise=True),
        EnsureTyped(keys, dtype=torch.float32, track_meta=track_meta),
    ]


def cxr_lung_train_transforms(
    image_size: int = 256,
    affine_prob: float = 0.5,
    rotate_degrees: float = 10.0,
    scale: float = 0.1,
    translate: float = 0.05,
    gamma_prob: float = 0.3,
    gamma: Sequence[float] = (0.8, 1.25),
) -> Compose:
    """Lung-segmentation training pipeline for :func:`~pipelines.data.datalists.montgomery_datalist` items.

    Load the image (grayscale ``(1, H, W)`` in [0, 255]; colour becomes luminance) and merge its mask files
    (``label``: the Montgomery left and right lung, or one mask) -> resize both to ``image_size`` x ``image_size``
    (the whole radiograph, aspect ratio not kept, as the method resizes to 512 x 512) -> light augmentation: a
    random affine (rotation ``|a| <= rotate_degrees``, scaling ``1 +- scale``, shift ``+- translate * image_size``,
    probability ``affine_prob``; image bilinear, mask nearest, border padding) and a random gamma of the image
    (``gamma`` range, probability ``gamma_prob``) -> z-score of the image. No flips: a radiograph is not
    left-right symmetric (the heart).

    Returns a :class:`~monai.transforms.Compose` producing ``image`` ``(1, S, S)`` float32, ``label`` ``(1, S, S)``
    in {0, 1} and the item's ``case_id``. Everything before the affine is deterministic, so MONAI's
    ``CacheDataset`` caches the resized images.
    """
    from monai.transforms import RandAdjustContrastd, RandAffined

    keys = ("image", "label")
    steps = _cxr_lung_load(image_size)
    if affine_prob > 0:
        shift = float(translate) * int(image_size)
        steps.append(
            RandAffined(
                keys, prob=affine_prob, rotate_range=math.radians(rotate_degrees), scale_range=(scale, scale),
                translate_range=(shift, shift), mode=("bilinear", "nearest"), padding_mode="border",
            )
        )
    if gamma_prob > 0:
        steps.append(RandAdjustContrastd("image", prob=gamma_prob, gamma=tuple(gamma)))
    return Compose(steps + _cxr_lung_finish(keys, track_meta=False))


def cxr_lung_eval_transforms(image_size: int = 256) -> Compose:
    """Lung-segmentation evaluation pipeline: :func:`cxr_lung_train_transforms` without augmentation
    (load, merge the masks, resize to ``image_size``, z-score). Deterministic; outputs as the training pipeline."""
    return Compose(_cxr_lung_load(image_size) + _cxr_lung_finish(("image", "label"), track_meta=False))


def cxr_lung_image_transforms(image_size: int = 256, image_key: str = "image") -> Compose:
    """The image path of :func:`cxr_lung_eval_transforms` after loading, keeping the meta data for
    :class:`~monai.transforms.Invertd`: resize to ``image_size`` x ``image_size`` (bilinear, anti-aliased), z-score.
    Its input is ``{image_key: MetaTensor (1, H, W) in [0, 255]}`` (:func:`pipelines.predictors.load_input_image`);
    a predictor maps the network's ``(C, S, S)`` output back to ``(C, H, W)`` by inverting the resize."""
    from monai.transforms import Resized

    size = (int(image_size), int(image_size))
    return Compose([
        Resized(image_key, size, mode="bilinear", anti_aliasing=True),
        NormalizeIntensityd(image_key, nonzero=False, channel_wise=True),
        EnsureTyped(image_key, dtype=torch.float32, track_meta=True),
    ])


# --------------------------------------------------------------------------------------------
# chest X-ray classification with the Grad-CAM attention loss (cxr_attention_classification)
# --------------------------------------------------------------------------------------------
class _LungBoxToGridd(MapTransform):
    """Map the item's lung box from the grid of its image (as loaded, before any resize) to the
    ``spatial_size`` grid the image is resized to (:func:`transforms.chestxray.scale_box`); float32 ``(4,)``."""

    def __init__(self, keys: str = "lung_box", image_key: str = "image", spatial_size: int = 224) -> None:
        super().__init__(keys)
        self.image_key, self.spatial_size = image_key, (int(spatial_size), int(spatial_size))

    def __call__(self, data):
        from .chestxray import scale_box

        d = dict(data)
        from_hw = tuple(int(s) for s in d[self.image_key].shape[1:])
        for key in self.key_iterator(d):
            box = scale_box(torch.as_tensor(d[key]).reshape(4).tolist(), from_hw, self.spatial_size)
            d[key] = torch.as_tensor(box, dtype=torch.float32)
        return d


def _cxr_classification_load(class_names: Sequence[str], image_size: int) -> list:
    """Load (grayscale ``(1, H, W)`` in [0, 255]) -> lung box to the ``image_size`` grid -> class region ->
    resize the image to ``image_size`` x ``image_size`` (bilinear, anti-aliased)."""
    from monai.transforms import Resized

    from .busi import LoadBUSId
    from .chestxray import ClassRegiond

    size = (int(image_size), int(image_size))
    return [
        LoadBUSId("image", masks_key="_no_masks", mask_key="_unused_mask", has_mask_key="_unused_has_mask"),
        DeleteItemsd(("_unused_mask", "_unused_has_mask")),
        _LungBoxToGridd("lung_box", image_key="image", spatial_size=image_size),
        ClassRegiond("region", class_names=class_names, spatial_size=size, box_key="lung_box", label_key="label"),
        Resized("image", size, mode="bilinear", anti_aliasing=True),
    ]


def _cxr_classification_normalise(image_key: str = "image") -> list:
    """[0, 255] -> [0, 1] -> ``(x - 0.5) / 0.5`` (the method's mean/std 0.5 normalisation, i.e. [-1, 1])."""
    return [
        ScaleIntensityRanged(image_key, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
        NormalizeIntensityd(image_key, subtrahend=0.5, divisor=0.5),
    ]


def cxr_classification_train_transforms(
    class_names: Sequence[str],
    image_size: int = 224,
    augment: bool = True,
    affine_prob: float = 0.5,
    rotate_degrees: float = 5.0,
    scale: float = 0.05,
    translate: float = 0.03,
    intensity_prob: float = 0.5,
    intensity: float = 0.1,
) -> Compose:
    """Training pipeline of the Grad-CAM attention classifier for
    :func:`~pipelines.data.datalists.chestxray14_prepared_datalist` items (``image``, ``label``, ``lung_box`` in the
    original pixel grid).

    Load the image as one grayscale channel in [0, 255] (RGBA and 16-bit PNGs included,
    :func:`transforms.busi.load_busi_image`) -> map the lung box to the ``image_size`` grid -> ``region``, the class
    region of the item's label (:class:`transforms.chestxray.ClassRegiond`, ``(1, S, S)`` in {0, 1}, all zero for No
    Finding) -> resize the image to ``image_size`` x ``image_size`` (the whole radiograph, aspect ratio not kept, as
    the method's 224 x 224) -> light augmentation (``augment``) that keeps the region on the anatomy: one random
    affine of image and region together (rotation ``|a| <= rotate_degrees``, scaling ``1 +- scale``, shift
    ``+- translate * image_size``, probability ``affine_prob``; image bilinear, region nearest, zero padding) and a
    random intensity scaling of the image (``1 +- intensity``, probability ``intensity_prob``); no flips (the heart
    makes a radiograph asymmetric) -> [0, 1] -> mean/std 0.5.

    Returns a :class:`~monai.transforms.Compose` producing ``image`` ``(1, S, S)`` float32 in about [-1, 1],
    ``region`` ``(1, S, S)`` float32, ``lung_box`` float32 ``(4,)`` in the ``S`` grid (before the affine) and the
    item's other keys. Everything before the augmentation is deterministic (cached by MONAI's ``CacheDataset``).

    Args:
        class_names: the task's classes in label order (:data:`transforms.chestxray.CXR_TASKS`).
        image_size: network input side S (224 in the method).
        augment: apply the augmentation (False: the evaluation pipeline).
        affine_prob / rotate_degrees / scale / translate: the random affine.
        intensity_prob / intensity: the random intensity scaling.
    """
    from monai.transforms import RandAffined

    steps = _cxr_classification_load(class_names, image_size)
    if augment and affine_prob > 0:
        shift = float(translate) * int(image_size)
        steps.append(
            RandAffined(
                ("image", "region"), prob=affine_prob, rotate_range=math.radians(rotate_degrees),
                scale_range=(scale, scale), translate_range=(shift, shift), mode=("bilinear", "nearest"),
                padding_mode="zeros",
            )
        )
    if augment and intensity_prob > 0 and intensity > 0:
        steps.append(RandScaleIntensityd("image", factors=intensity, prob=intensity_prob))
    steps += _cxr_classification_normalise()
    steps.append(EnsureTyped(("image", "region"), dtype=torch.float32, track_meta=False))
    return Compose(steps)


def cxr_classification_eval_transforms(class_names: Sequence[str], image_size: int = 224) -> Compose:
    """Evaluation pipeline: :func:`cxr_classification_train_transforms` without augmentation (load, lung box to the
    ``image_size`` grid, class region, resize, [0, 1], mean/std 0.5). Deterministic; outputs as the training one."""
    return cxr_classification_train_transforms(class_names, image_size, augment=False)


def cxr_classification_image_transforms(image_size: int = 224, image_key: str = "image") -> Compose:
    """The image path of :func:`cxr_classification_eval_transforms` after loading, keeping the meta data for
    :class:`~monai.transforms.Invertd` (a predictor maps the ``(1, S, S)`` Grad-CAM back onto the ``(H, W)`` image):
    resize to ``image_size`` x ``image_size`` (bilinear, anti-aliased), [0, 255] -> [0, 1], mean/std 0.5. Its input
    is ``{image_key: MetaTensor (1, H, W) in [0, 255]}`` (:func:`pipelines.predictors.load_input_image`)."""
    from monai.transforms import Resized

    size = (int(image_size), int(image_size))
    return Compose([
        Resized(image_key, size, mode="bilinear", anti_aliasing=True),
        *_cxr_classification_normalise(image_key),
        EnsureTyped(image_key, dtype=torch.float32, track_meta=True),
    ])


# --------------------------------------------------------------------------------------------
# BUSI joint segmentation + classification (busi_joint_segcls)
# --------------------------------------------------------------------------------------------
__all__ += ["busi_joint_eval_transforms", "busi_joint_image_transforms", "busi_joint_train_transforms"]


def _busi_joint_load(image_size: int) -> list:
    """Load (masks merged; a normal image gets its all-zero mask) -> resize image and mask to ``image_size`` x
    ``image_size`` (aspect ratio not kept, as the method resizes to 256 x 256; image bilinear with anti-aliasing,
    mask by area then thresholded at 0.5)."""
    from monai.transforms import AsDiscreted, Resized

    size = (int(image_size), int(image_size))
    return [
        LoadBUSId("image"),
        Resized(("image", "mask"), size, mode=("bilinear", "area"), anti_aliasing=(True, False)),
        AsDiscreted("mask", threshold=0.5),
    ]


def _busi_joint_finish() -> list:
    return [
        ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, clip=True),
        EnsureTyped(("image", "mask"), dtype=torch.float32, track_meta=False),
        DeleteItemsd(("masks", "boxes")),  # lists of varying length cannot be collated
    ]


def busi_joint_train_transforms(
    image_size: int = 256,
    flip_prob: float = 0.5,
    vflip_prob: float = 0.0,
    rotate_degrees: float = 30.0,
    rotate_prob: float = 0.5,
) -> Compose:
    """Training pipeline of the joint segmentation + classification network for
    :func:`~pipelines.data.datalists.busi_datalist` items (``include_normal=True``).

    Load (masks merged) -> resize to ``image_size`` x ``image_size`` -> horizontal flip (``flip_prob``), optional
    vertical flip (``vflip_prob``, off: ultrasound depth has a direction) and a rotation by U(-``rotate_degrees``,
    ``rotate_degrees``) (probability ``rotate_prob``; image bilinear, mask nearest, zero padding), applied to image
    and mask alike -> [0, 255] -> [-1, 1].

    Returns a :class:`~monai.transforms.Compose` producing ``image`` ``(1, S, S)`` in [-1, 1], ``mask`` ``(1, S, S)``
    in {0, 1} (all zero for a normal image), ``has_mask``, ``label`` and the item's ``case_id``. Everything before
    the flips is deterministic, so MONAI's ``CacheDataset`` caches the resized images.
    """
    keys = ("image", "mask")
    steps = _busi_joint_load(image_size)
    if flip_prob > 0:
        steps.append(RandFlipd(keys, prob=flip_prob, spatial_axis=1))  # horizontal (width axis)
    if vflip_prob > 0:
        steps.append(RandFlipd(keys, prob=vflip_prob, spatial_axis=0))
    if rotate_prob > 0 and rotate_degrees > 0:
        angle = math.radians(rotate_degrees)
        steps.append(RandRotated(keys, range_x=angle, prob=rotate_prob, mode=("bilinear", "nearest"),
                                 padding_mode="zeros", keep_size=True))
    return Compose(steps + _busi_joint_finish())


def busi_joint_eval_transforms(image_size: int = 256) -> Compose:
    """Evaluation pipeline: :func:`busi_joint_train_transforms` without augmentation (load, resize to
    ``image_size`` x ``image_size``, [-1, 1]). Deterministic; outputs as the training pipeline."""
    return Compose(_busi_joint_load(image_size) + _busi_joint_finish())


def busi_joint_image_transforms(image_size: int = 256, image_key: str = "image") -> Compose:
    """The image path of :func:`busi_joint_eval_transforms` after loading, keeping the meta data for
    :class:`~monai.transforms.Invertd`: resize to ``image_size`` x ``image_size`` (bilinear, anti-aliased),
    [0, 255] -> [-1, 1]. Its input is ``{image_key: MetaTensor (1, H, W) in [0, 255]}``
    (:func:`pipelines.predictors.load_input_image`)."""
    from monai.transforms import Resized

    size = (int(image_size), int(image_size))
    return Compose([
        Resized(image_key, size, mode="bilinear", anti_aliasing=True),
        ScaleIntensityRanged(image_key, a_min=0.0, a_max=255.0, b_min=-1.0, b_max=1.0, clip=True),
        EnsureTyped(image_key, dtype=torch.float32, track_meta=True),
    ])


# --------------------------------------------------------------------------------------------
# breast-ultrasound lesion detection (busi_detection)
# --------------------------------------------------------------------------------------------
__all__ += ["boxes_to_original", "detection_eval_transforms", "detection_image_transforms",
            "detection_train_transforms"]


def _detection_frame(
    image_size: int, crop_frame: bool, clahe: bool, image_key: str, box_keys: Sequence[str], label_keys: Sequence[str],
    frame_threshold: float, frame_min_fraction: float, clahe_clip_limit: float, clahe_kernel_size: int | None,
) -> list:
    """Scanner-frame crop (or the whole frame, recorded as ``crop_box`` alike) -> resize to ``image_size`` x
    ``image_size`` with the boxes -> CLAHE (or [0, 255] -> [0, 1])."""
    from .ultrasound import CLAHEd, ResizeBoxd, ScannerFrameCropd

    steps: list = [
        ScannerFrameCropd(image_key, box_keys=box_keys, box_ref_image_keys=image_key, label_keys=label_keys,
                          threshold=frame_threshold, min_fraction=frame_min_fraction if crop_frame else 0.0),
        ResizeBoxd(image_key, box_keys, image_key, int(image_size), mode="bilinear", anti_aliasing=True),
    ]
    if clahe:
        steps.append(CLAHEd(image_key, clip_limit=clahe_clip_limit, kernel_size=clahe_kernel_size, in_max=255.0))
    else:
        steps.append(ScaleIntensityRanged(image_key, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True))
    return steps


def _detection_channels(channels: int, image_key: str) -> list:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    from monai.transforms import RepeatChanneld

    return [RepeatChanneld(image_key, repeats=3)] if channels == 3 else []


def detection_train_transforms(
    image_size: int = 512,
    crop_frame: bool = False,
    clahe: bool = True,
    channels: int = 3,
    augment: bool = True,
    flip_prob: float = 0.5,
    vflip_prob: float = 0.0,
    affine_prob: float = 0.5,
    scale: float = 0.1,
    translate: float = 0.05,
    rotate_degrees: float = 0.0,
    gamma_prob: float = 0.3,
    gamma: Sequence[float] = (0.7, 1.5),
    contrast_prob: float = 0.3,
    contrast: float = 0.2,
    noise_prob: float = 0.2,
    noise_std: float = 0.02,
    frame_threshold: float = 0.0,
    frame_min_fraction: float = 0.1,
    clahe_clip_limit: float = 0.01,
    clahe_kernel_size: int | None = None,
) -> Compose:
    """Lesion-detection training pipeline for the detection datalists' items (``image`` path, ``box`` ``[[r0, c0,
    r1, c1], ...]`` on the image's own grid, ``label`` one int per box; negatives ``[]``).

    Load (:class:`transforms.io.LoadFramed`: PNG / JPEG / DICOM, one channel in [0, 255]) -> boxes to float32
    ``(N, 4)``, labels to int64 ``(N,)`` -> scanner-frame crop (``crop_frame``, :class:`transforms.ultrasound.
    ScannerFrameCropd`: boxes shifted, clipped, emptied ones dropped; ``crop_box`` recorded, the whole frame without
    the crop) -> resize to ``image_size`` x ``image_size`` with the boxes (aspect ratio not kept, as the seed resizes)
    -> CLAHE (``clahe``; else [0, 255] -> [0, 1]) -> augmentation that moves the boxes (``augment``): horizontal flip
    (``flip_prob``), vertical flip (``vflip_prob``, off: ultrasound depth has a direction), both MONAI's
    ``RandFlipBoxd``; a random affine (probability ``affine_prob``, scale ``1 +- scale``, shift ``+- translate *
    image_size``, rotation ``+- rotate_degrees``, off by default since a rotated box is loose;
    :class:`transforms.ultrasound.RandAffineBoxd`), boxes clipped and emptied ones dropped with their labels; then
    intensity of the image only: gamma (``gamma`` range, ``gamma_prob``), contrast about the mean (``1 +- contrast``,
    ``contrast_prob``), Gaussian noise (``noise_std``, ``noise_prob``), clipped to [0, 1] -> ``channels`` (3: the
    gray channel repeated, as the seed fed an ImageNet backbone; or 1).

    Returns a :class:`~monai.transforms.Compose` producing ``image`` float32 ``(channels, S, S)`` in [0, 1], ``box``
    float32 ``(N, 4)`` on the ``S`` grid, ``label`` int64 ``(N,)``, ``crop_box`` float32 ``(4,)`` and the item's other
    keys. Everything before the flips is deterministic (cached by MONAI's ``CacheDataset``). Boxes of the evaluation
    pipeline map back to the frame with :func:`boxes_to_original`.
    """
    from monai.apps.detection.transforms.dictionary import (
        RandFlipBoxd,
        StandardizeEmptyBoxd,
    )
    from monai.transforms import RandAdjustContrastd, RandGaussianNoised

    from .io import LoadFramed
    from .ultrasound import RandAffineBoxd

    image, box, label = "image", "box", "label"
    steps: list = [
        LoadFramed(image),
        EnsureTyped(box, dtype=torch.float32, track_meta=False),
        EnsureTyped(label, dtype=torch.int64, track_meta=False),
        StandardizeEmptyBoxd(box_keys=box, box_ref_image_keys=image),
    ]
    steps += _detection_frame(image_size, crop_frame, clahe, image, (box,), (label,), frame_threshold,
                              frame_min_fraction, clahe_clip_limit, clahe_kernel_size)
    if augment:
        if flip_prob > 0:
            steps.append(RandFlipBoxd(image, box, image, prob=flip_prob, spatial_axis=1))  # left-right
        if vflip_prob > 0:
            steps.append(RandFlipBoxd(image, box, image, prob=vflip_prob, spatial_axis=0))
        if affine_prob > 0:
            shift = float(translate) * int(image_size)
            steps.append(RandAffineBoxd(image, box, label, prob=affine_prob, rotate_range=math.radians(rotate_degrees),
                                        scale_range=scale, translate_range=shift))
        if gamma_prob > 0:
            steps.append(RandAdjustContrastd(image, prob=gamma_prob, gamma=tuple(gamma)))
        if contrast_prob > 0 and contrast > 0:
            steps.append(RandScaleIntensityFixedMeand(image, factors=contrast, fixed_mean=True, prob=contrast_prob))
        if noise_prob > 0 and noise_std > 0:
            steps.append(RandGaussianNoised(image, prob=noise_prob, std=noise_std))
        steps.append(ScaleIntensityRanged(image, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True))
    steps += _detection_channels(channels, image)
    steps += [
        EnsureTyped(image, dtype=torch.float32, track_meta=False),
        EnsureTyped(box, dtype=torch.float32, track_meta=False),
        EnsureTyped(label, dtype=torch.int64, track_meta=False),
        DeleteItemsd((f"{box}_transforms", f"{label}_transforms")),  # MONAI's box-transform traces: not collatable
    ]
    return Compose(steps)


def detection_eval_transforms(
    image_size: int = 512,
    crop_frame: bool = False,
    clahe: bool = True,
    channels: int = 3,
    frame_threshold: float = 0.0,
    frame_min_fraction: float = 0.1,
    clahe_clip_limit: float = 0.01,
    clahe_kernel_size: int | None = None,
) -> Compose:
    """Lesion-detection evaluation pipeline: :func:`detection_train_transforms` without augmentation (load, crop,
    resize with the boxes, CLAHE, channels). Deterministic; outputs as the training pipeline."""
    return detection_train_transforms(
        image_size, crop_frame, clahe, channels, augment=False, frame_threshold=frame_threshold,
        frame_min_fraction=frame_min_fraction, clahe_clip_limit=clahe_clip_limit, clahe_kernel_size=clahe_kernel_size,
    )


def detection_image_transforms(
    image_size: int = 512,
    crop_frame: bool = False,
    clahe: bool = True,
    channels: int = 3,
    image_key: str = "image",
    frame_threshold: float = 0.0,
    frame_min_fraction: float = 0.1,
    clahe_clip_limit: float = 0.01,
    clahe_kernel_size: int | None = None,
) -> Compose:
    """The image path of :func:`detection_eval_transforms` after loading, for a predictor: from ``{image_key:
    MetaTensor (1, H, W) in [0, 255]}`` (:func:`transforms.io.load_input_image`) to ``(channels, S, S)`` in [0, 1],
    meta data kept (the crop and the resize are recorded, so ``Invertd`` maps a network-grid map back into the frame)
    and ``crop_box`` recorded for :func:`boxes_to_original`. Gives the evaluation pipeline's image exactly."""
    steps = _detection_frame(image_size, crop_frame, clahe, image_key, (), (), frame_threshold, frame_min_fraction,
                             clahe_clip_limit, clahe_kernel_size)
    steps += _detection_channels(channels, image_key)
    steps.append(EnsureTyped(image_key, dtype=torch.float32, track_meta=True))
    return Compose(steps)


def boxes_to_original(boxes: torch.Tensor | Sequence[Sequence[float]], data: dict, image_key: str = "image"):
    """Boxes on the network grid of one pre-processed item -> the original frame (the resize and the crop undone).

    ``data`` is the item as :func:`detection_eval_transforms` or :func:`detection_image_transforms` left it (or a
    mapping with its ``crop_box`` and its image, or ``spatial_size``): a box ``b`` on the ``(S0, S1)`` grid of a crop
    ``[r0, c0, r1, c1]`` maps to ``[r0 + b0 (r1 - r0) / S0, c0 + b1 (c1 - c0) / S1, ...]`` (float64; an exact inverse
    of the forward mapping up to float32 rounding of the boxes).

    Args:
        boxes: ``(N, 4)`` (array or tensor) on the network grid, standard mode.
        data: the pre-processed item: ``crop_box`` ``(4,)`` and ``data[image_key]`` ``(..., S0, S1)`` (or
            ``spatial_size``, ``(S0, S1)``).
        image_key: key of the network-grid image.

    Returns:
        float64 ``(N, 4)`` ``[r0, c0, r1, c1]`` on the original frame.

    Raises:
        KeyError: ``data`` has no ``crop_box`` or no grid size.
    """
    import numpy as np

    def _np(x):
        return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)

    if "crop_box" not in data:
        raise KeyError("data has no 'crop_box': pre-process it with transforms.recipes.detection_*_transforms.")
    r0, c0, r1, c1 = _np(data["crop_box"]).reshape(4)
    if "spatial_size" in data:
        grid = _np(data["spatial_size"]).reshape(2)
    elif image_key in data:
        grid = np.asarray(tuple(data[image_key].shape[-2:]), dtype=np.float64)
    else:
        raise KeyError(f"data has neither {image_key!r} nor 'spatial_size' (the network grid).")
    scale = np.array([(r1 - r0) / grid[0], (c1 - c0) / grid[1]] * 2)
    offset = np.array([r0, c0, r0, c0])
    return _np(boxes).reshape(-1, 4) * scale + offset
