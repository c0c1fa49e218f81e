"""The bundles that ship with the repository: locating them, checking their metadata, guarding their commands
(:mod:`.guards`: overrides checked, one-line errors) and saying where their results went (:mod:`.summary`)."""

from __future__ import annotations

from .guards import ConfigOverrideError, UserFacingError, check_overrides, guard
from .metadata import verify_bundle_metadata
from .paths import REPO_ROOT, bundle_root, check_output_dir, list_bundles
from .run_folder import (
            RunBundleWriter,
            RunSettingsError,
            check_run_settings,
            run_bundle_root,
)
from .summary import evaluation_summary, inference_summary, training_summary

__all__ = ['REPO_ROOT', 'bundle_root', 'check_output_dir', 'list_bundles', 'verify_bundle_metadata']
__all__ += ['RunBundleWriter', 'RunSettingsError', 'check_run_settings', 'run_bundle_root']
__all__ += ['ConfigOverrideError', 'UserFacingError', 'check_overrides', 'guard', 'evaluation_summary',
            'inference_summary', 'training_summary']
