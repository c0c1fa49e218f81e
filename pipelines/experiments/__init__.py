"""Experiments over many runs: sweeps (the attention ablation, encoder x decoder) and k-fold cross-validation."""

from __future__ import annotations

from .crossval import cross_validate, summarise_cross_validation
from .sweep import expand_cells, load_sweep, run_sweep

__all__ = ['expand_cells', 'load_sweep', 'run_sweep']
__all__ += ['cross_validate', 'summarise_cross_validation']
