"""Offline validation of MONAI bundle ``metadata.json`` files.

MONAI's ``verify_metadata`` downloads the metadata JSON schema named by the ``schema`` field of
``metadata.json``. CI has no internet, so the schema is kept in the repository
(``configs/schema/meta_schema_20240725.json``, a verbatim copy of MONAI's published schema; see
``configs/schema/README.md``). :func:`verify_bundle_metadata` validates against that local copy with
``jsonschema`` and never touches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from .paths import REPO_ROOT

__all__ = ["REPO_SCHEMA_FILE", "SCHEMA_URL", "format_json_path", "iter_metadata_errors", "verify_bundle_metadata"]

#: The repository's copy of MONAI's bundle metadata schema. The path is resolved relative to the source
#: checkout (``<repo>/configs/schema``); it does not exist when ``pipelines`` is installed non-editable.
REPO_SCHEMA_FILE: Path = REPO_ROOT / "configs" / "schema" / "meta_schema_20240725.json"

#: The URL MONAI publishes that schema under; bundles put it in the ``schema`` field of ``metadata.json``.
SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_json_path(path: Iterable[Any]) -> str:
    """Render a jsonschema error path as a JSONPath string, e.g. ``$.network_data_format.inputs.image``."""
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            out += f".{part}"
        else:
            out += "[" + json.dumps(str(part)) + "]"
    return out


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """Descend into ``anyOf``/``oneOf`` errors to the sub-errors that actually name the offending key.

    For an ``anyOf`` such as MONAI's ``argument`` definition (number | integer | string | boolean | tensor), the
    branches that fail only because the instance has another type are noise; the remaining branch (here: the tensor
    object) carries the useful error, e.g. ``num_channels: '4' is not of type 'integer'``. If every branch fails on
    the type alone, the combined error itself is reported.
    """
    if not error.context:
        yield error
        return
    specific = [e for e in error.context if not (e.validator == "type" and len(e.relative_path) == 0)]
    if not specific:
        yield error
        return
    for sub in specific:
        yield from _leaf_errors(sub)


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with path.open(encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{what} {path} is not valid JSON: {e}") from e


def _resolve_schema_file(schema_file: str | PathLike[str] | None) -> Path:
    path = REPO_SCHEMA_FILE if schema_file is None else Path(schema_file)
    if not path.is_file():
        hint = (
            " (the default schema lives in the source checkout under configs/schema/; it is not shipped when the"
            " package is installed non-editable -- pass schema_file explicitly)"
            if schema_file is None
            else ""
        )
        raise FileNotFoundError(f"bundle metadata schema file not found: {path}{hint}")
    return path


def iter_metadata_errors(metadata: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate ``metadata`` against ``schema``; return ``(json_path, message)`` for every violation, sorted."""
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    found: set[tuple[str, str]] = set()
    for error in validator.iter_errors(metadata):
        for leaf in _leaf_errors(error):
            found.add((format_json_path(leaf.absolute_path), leaf.message))
    return sorted(found)


def verify_bundle_metadata(meta_file: str, schema_file: str | None = None) -> None:
    """Validate a bundle ``metadata.json`` against the repository's MONAI metadata schema, offline.

    Args:
        meta_file: path of the ``metadata.json`` to check.
        schema_file: JSON schema to validate against; defaults to :data:`REPO_SCHEMA_FILE`.

    Raises:
        FileNotFoundError: ``meta_file`` or the schema file does not exist (the message names the path).
        ValueError: the metadata is not valid JSON, or violates the schema; the message lists every violation as
            ``<JSONPath>: <message>``, e.g. ``$.network_data_format.inputs.image.num_channels: '4' is not of
            type 'integer'`` or ``$: 'version' is a required property``.
    """
    schema_path = _resolve_schema_file(schema_file)
    schema = _load_json(schema_path, "bundle metadata schema")
    meta_path = Path(meta_file)
    metadata = _load_json(meta_path, "bundle metadata file")
    errors = iter_metadata_errors(metadata, schema)
    if errors:
        lines = "\n".join(f"  - {path}: {message}" for path, message in errors)
        raise ValueError(
            f"{meta_path} violates bundle metadata schema {schema_path.name} ({len(errors)} error(s)):\n{lines}"
        )
