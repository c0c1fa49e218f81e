"""Errors raised while scanning and validating datasets."""

from __future__ import annotations

from ..bundles.guards import UserFacingError

__all__ = ["DatasetError"]


class DatasetError(ValueError, UserFacingError):
    """A dataset on disk is missing, incomplete or inconsistent.

    Raised by the datalist scanners before any training starts. The message always names the
    offending file (or folder) and says what is wrong with it, e.g. which modality is missing,
    which two files disagree in shape, or which label values are not allowed.
    """
