"""The shared training recipe of the 3D segmentation bundles (BraTS, MALC, HVSMR), written once.

A bundle's YAML keeps the model-zoo keys (``train#preprocessing``, ``validate#preprocessing``, ...) and fills them
from these builders with its dataset's settings, so a change to the recipe (say, the rotation range) is made here
and reaches every bundle, while each bundle stays readable and overridable from the command line::

    train:
      preprocessing: "$pipelines.recipes.segmentation_transforms('train', roi_size=@roi_size, label_mode='brats')"

The recipe is the PAM paper's: load, orient to RAS, z-score (per channel, or over the whole volume for MALC),
then for training pad/crop to the patch, random flips of the two in-plane axes (p 0.5 each; off for MALC, whose
left and right structures have different labels) and a random rotation by U(-10, 10) degrees about every axis
(p 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.transforms import (
    Compose,
    ConvertToMultiChannelBasedOnBratsClassesd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    Orientationd,
    RandFlipd,
    RandRotated,
    RandSpatialCropd,
    SpatialPadd,
)

__all__ = [
    "STAGES", "LABEL_MODES", "segmentation_transforms", "training_handlers", "checkpoint_handlers", "validation_handlers"
]

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


def training_handlers(lr_scheduler, validator, optimizer, log_dir: str, val_interval: int = 1,
                      show_progress: bool = False) -> list:
    """The trainer handlers of the 3D segmentation recipe: lr schedule (per epoch), validation every
    ``val_interval`` epochs, loss to the console and TensorBoard, learning rate to TensorBoard, optional progress bar.
    """
    from ignite.handlers import ProgressBar
    from monai.handlers import (
        LrScheduleHandler,
        StatsHandler,
        TensorBoardStatsHandler,
        ValidationHandler,
        from_engine,
    )

    from .handlers import LearningRateLogger

    loss = from_engine(["loss"], first=True)
    handlers = [
        LrScheduleHandler(lr_scheduler=lr_scheduler, print_lr=True),
        ValidationHandler(validator=validator, epoch_level=True, interval=val_interval),
        StatsHandler(tag_name="train_loss", output_transform=loss),
        TensorBoardStatsHandler(log_dir=log_dir, tag_name="train_loss", output_transform=loss),
        LearningRateLogger(optimizer, log_dir=log_dir),
    ]
    if show_progress:
        handlers.append(ProgressBar(persist=False))
    return handlers


def checkpoint_handlers(ckpt_dir: str, network, optimizer, lr_scheduler, trainer, validator, device=None) -> list:
    """Resume from the newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir`` (if any) and save the full training state
    (network, optimizer, scheduler, trainer, best validation score) there after every epoch.

    They refer to the trainer, so a config attaches them after building it
    (``pipelines.checkpoints.attach_handlers``).
    """
    from monai.handlers import CheckpointLoader, CheckpointSaver

    from .checkpoints import BestMetricState, latest_checkpoint

    state = {"model": network, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "trainer": trainer,
             "validation": BestMetricState(validator)}
    handlers = []
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        handlers.append(CheckpointLoader(load_path=last, load_dict=state, map_location=device))
    handlers.append(CheckpointSaver(save_dir=ckpt_dir, save_dict=state, save_interval=1, n_saved=1, epoch_level=True))
    return handlers


def validation_handlers(log_dir: str, ckpt_dir: str, network, slice_axis: int = -1,
                        label_background: bool = False) -> list:
    """The validation handlers of the recipe: metrics to the console and TensorBoard, one picture of a slice per
    validation (inputs, label and prediction overlays), and the best model by the key metric as ``model.pt``."""
    from monai.handlers import CheckpointSaver, StatsHandler, TensorBoardStatsHandler

    from .handlers import TensorBoardSliceHandler

    return [
        StatsHandler(iteration_log=False),
        TensorBoardStatsHandler(log_dir=log_dir, iteration_log=False),
        TensorBoardSliceHandler(log_dir=log_dir, slice_axis=slice_axis, label_background=label_background),
        CheckpointSaver(save_dir=ckpt_dir, save_dict={"model": network}, save_key_metric=True,
                        key_metric_filename="model.pt"),
    ]
