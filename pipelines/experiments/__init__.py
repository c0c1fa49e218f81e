"""Experiments over many runs: the attention ablation sweep."""

from __future__ import annotations

from .sweep import expand_cells, load_sweep, run_sweep

__all__ = ['expand_cells', 'load_sweep', 'run_sweep']
