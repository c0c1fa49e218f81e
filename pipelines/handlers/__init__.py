"""Ignite handlers: TensorBoard pictures, checkpoint / resume, the shared handler lists of the 3D bundles."""

from __future__ import annotations

from . import checkpoints, recipes, tensorboard
from .checkpoints import (
    LAST_CHECKPOINT_PREFIX,
    BestMetricState,
    attach_handlers,
    latest_checkpoint,
    load_weights,
)
from .recipes import checkpoint_handlers, training_handlers, validation_handlers
from .tensorboard import (
    LANetTensorBoardHandler,
    LearningRateLogger,
    TensorBoardSliceHandler,
    overlay_rgb,
)

__all__ = ['BestMetricState', 'LANetTensorBoardHandler', 'LAST_CHECKPOINT_PREFIX', 'LearningRateLogger', 'TensorBoardSliceHandler', 'attach_handlers', 'checkpoint_handlers', 'checkpoints', 'latest_checkpoint', 'load_weights', 'overlay_rgb', 'recipes', 'tensorboard', 'training_handlers', 'validation_handlers']
