"""Inferers: the fast sliding-window inferer (2D / 3D, AMP, channels-last, mirroring TTA)."""

from __future__ import annotations

from .sliding_window import FastSlidingWindowInferer, window_slices

__all__ = ['FastSlidingWindowInferer', 'window_slices']
