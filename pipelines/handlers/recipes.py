"""The handler lists shared by the 3D segmentation bundles (BraTS, MALC, HVSMR), written once: training (lr
schedule, validation, loss and learning rate to console and TensorBoard), checkpoint / resume, validation (best
model, TensorBoard slices), and the checkpoint-loading lists of evaluation and inference.

Every argument is keyword-only, so a bundle's YAML names what it passes::

    handlers: "$pipelines.handlers.training_handlers(lr_scheduler=@lr_scheduler, validator=@validate#evaluator,
        optimizer=@optimizer, log_dir=@log_dir, val_interval=@val_interval, show_progress=@show_progress)"
"""

from __future__ import annotations

from collections.abc import Sequence

import ignite.distributed as idist

from .tensorboard import OptimizerParamsLogger, TensorBoardSliceHandler

__all__ = [
    "checkpoint_handlers",
    "evaluation_handlers",
    "training_handlers",
    "validation_handlers",
]


def training_handlers(
    *, lr_scheduler, validator, optimizer, log_dir: str, val_interval: int = 1, show_progress: bool = False
) -> list:
    """The trainer handlers of the 3D segmentation recipe: lr schedule (per epoch), validation every
    ``val_interval`` epochs, loss to the console and TensorBoard, learning rate to TensorBoard
    (:class:`~pipelines.handlers.tensorboard.OptimizerParamsLogger`, scalar ``lr/group_0``), optional progress bar.
    """
    from ignite.handlers import ProgressBar
    from monai.handlers import (
        LrScheduleHandler,
        StatsHandler,
        TensorBoardStatsHandler,
        ValidationHandler,
        from_engine,
    )

    loss = from_engine(["loss"], first=True)
    if idist.get_rank() > 0:  # under torchrun only rank 0 logs (console, TensorBoard, progress)
        return [LrScheduleHandler(lr_scheduler=lr_scheduler, print_lr=False),
                ValidationHandler(validator=validator, epoch_level=True, interval=val_interval)]
    handlers = [
        LrScheduleHandler(lr_scheduler=lr_scheduler, print_lr=True),
        ValidationHandler(validator=validator, epoch_level=True, interval=val_interval),
        StatsHandler(tag_name="train_loss", output_transform=loss),
        TensorBoardStatsHandler(log_dir=log_dir, tag_name="train_loss", output_transform=loss),
        OptimizerParamsLogger(optimizer, log_dir=log_dir),
    ]
    if show_progress:
        handlers.append(ProgressBar(persist=False))
    return handlers


def checkpoint_handlers(
    *, ckpt_dir: str, network, optimizer, trainer, validator, lr_scheduler=None, device=None, settings=None,
    resume: bool = True, keep_last: int = 2,
) -> list:
    """Resume the newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir`` when it is the same run, and save the full training
    state there after every epoch, keeping the last ``keep_last``.

    The state: network, optimizer, scheduler (if any), trainer, the trainer's best training metric (MONAI's
    ``key_train_metric``, e.g. ``train_dice``) and the validator's best validation metric
    (:class:`~pipelines.handlers.checkpoints.BestMetricState`), and ``settings``
    (:class:`~pipelines.handlers.checkpoints.RunSettings`), which a resume must match
    (:class:`~pipelines.handlers.checkpoints.ResumeCheckpointLoader`). ``resume=False`` starts afresh, moving the old
    checkpoints aside. They refer to the trainer, so a config attaches them after building it
    (``pipelines.handlers.attach_handlers``), before anything else that acts when the trainer starts.

    Returns:
        ``[ResumeCheckpointLoader, CheckpointSaver, CheckpointPruner]``.
    """
    from monai.handlers import CheckpointSaver

    from .checkpoints import (
        RUN_SETTINGS_KEY,
        BestMetricState,
        CheckpointPruner,
        ResumeCheckpointLoader,
        RunSettings,
    )

    if settings is not None and not isinstance(settings, RunSettings):
        settings = RunSettings(settings)
    state = {"model": network, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "trainer": trainer,
             "training_best": BestMetricState(trainer), "validation": BestMetricState(validator),
             RUN_SETTINGS_KEY: settings}
    state = {k: v for k, v in state.items() if v is not None}
    return [
        ResumeCheckpointLoader(ckpt_dir, state, settings=settings, resume=resume, map_location=device,
                               keep_last=keep_last),
        CheckpointSaver(save_dir=ckpt_dir, save_dict=state, save_interval=1, n_saved=keep_last, epoch_level=True),
        CheckpointPruner(ckpt_dir, keep=keep_last),
    ]


def validation_handlers(
    *, log_dir: str, ckpt_dir: str, network, slice_axis: int = -1, label_background: bool = False
) -> list:
    """The validation handlers of the recipe: metrics to the console and TensorBoard, one picture of a slice per
    validation (inputs, label and prediction overlays), and the best model by the key metric as ``model.pt``."""
    from monai.handlers import CheckpointSaver, StatsHandler, TensorBoardStatsHandler


    if idist.get_rank() > 0:  # under torchrun only rank 0 logs and saves the best model
        return []
    return [
        StatsHandler(iteration_log=False),
        TensorBoardStatsHandler(log_dir=log_dir, iteration_log=False),
        TensorBoardSliceHandler(log_dir=log_dir, slice_axis=slice_axis, label_background=label_background),
        CheckpointSaver(save_dir=ckpt_dir, save_dict={"model": network}, save_key_metric=True,
                        key_metric_filename="model.pt"),
    ]


def evaluation_handlers(*, ckpt_path: str, network, device=None, extra: Sequence = ()) -> list:
    """The handlers of an evaluation or inference run of a trained network: load ``ckpt_path`` into ``network``
    (MONAI ``CheckpointLoader``, key ``model``), the run's metrics to the console, then ``extra`` (e.g. the
    evaluation's :class:`pipelines.evaluation.MetricsReportHandler`)."""
    from monai.handlers import CheckpointLoader, StatsHandler

    return [
        CheckpointLoader(load_path=ckpt_path, load_dict={"model": network}, map_location=device),
        *([StatsHandler(iteration_log=False)] if idist.get_rank() == 0 else []),  # under torchrun rank 0 logs
        *extra,
    ]
