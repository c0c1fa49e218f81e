"""Everything that turns data and a network into results, one subpackage per concern: ``data``, ``engines``,
``losses``, ``metrics``, ``handlers``, ``inferers``, ``predictors``, ``evaluation``, ``experiments``, ``bundles``."""

from __future__ import annotations

from . import (
    bundles,
    data,
    engines,
    evaluation,
    experiments,
    handlers,
    inferers,
    losses,
    metrics,
    predictors,
)
from .bundles import bundle_root

__all__ = [
    "bundle_root", "bundles", "data", "engines", "evaluation", "experiments", "handlers", "inferers", "losses",
    "metrics", "predictors",
]
