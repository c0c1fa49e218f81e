"""The bundles that ship with the repository: locating them, checking their metadata."""

from __future__ import annotations

from .metadata import verify_bundle_metadata
from .paths import REPO_ROOT, bundle_root, check_output_dir, list_bundles

__all__ = ['REPO_ROOT', 'bundle_root', 'check_output_dir', 'list_bundles', 'verify_bundle_metadata']
