"""Inferers: the fast sliding-window inferer (2D / 3D, AMP, channels-last, mirroring TTA) and the training-step
autocast inferer."""

from __future__ import annotations

from .autocast import AutocastInferer
from .sliding_window import FastSlidingWindowInferer, window_slices

__all__ = ['AutocastInferer', 'FastSlidingWindowInferer', 'window_slices']
