"""Everything that turns data and a network into results: data, losses, handlers, inference, the CLI."""

from __future__ import annotations

from . import bundles, checkpoints, data, handlers, inferers, losses, metrics, recipes, reports
from .bundles import bundle_root

__all__ = [
    "bundle_root", "bundles", "checkpoints", "data", "handlers", "inferers", "losses", "metrics", "recipes", "reports"
]
