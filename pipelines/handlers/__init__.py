"""Ignite handlers: TensorBoard pictures, checkpoint / resume, the shared handler lists of the 3D bundles."""

from __future__ import annotations

from . import checkpoints, progress, recipes, tensorboard
from .checkpoints import (
    LAST_CHECKPOINT_PREFIX,
    BestMetricState,
    attach_handlers,
    extract_model_state,
    latest_checkpoint,
    load_weights,
)
from .progress import (
    PROGRESS_MODES,
    announce,
    attach_progress,
    overall_progress,
    progress_enabled,
    progress_handlers,
)
from .recipes import (
    checkpoint_handlers,
    evaluation_handlers,
    training_handlers,
    validation_handlers,
)
from .tensorboard import (
    EpochPictureHandler,
    LANetTensorBoardHandler,
    OptimizerParamsLogger,
    TensorBoardSliceHandler,
    overlay_rgb,
)

__all__ = ['PROGRESS_MODES', 'announce', 'attach_progress', 'overall_progress', 'progress', 'progress_enabled', 'progress_handlers', 'BestMetricState', 'EpochPictureHandler', 'LANetTensorBoardHandler', 'LAST_CHECKPOINT_PREFIX', 'OptimizerParamsLogger', 'TensorBoardSliceHandler', 'attach_handlers', 'extract_model_state', 'checkpoint_handlers', 'checkpoints', 'evaluation_handlers', 'latest_checkpoint', 'load_weights', 'overlay_rgb', 'recipes', 'tensorboard', 'training_handlers', 'validation_handlers']
