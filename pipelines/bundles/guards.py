"""Guard rails of the bundle commands: misspelled overrides caught, errors in one line, Ctrl-C with a resume hint.

Every run id of the bundles (``training``, ``evaluating``, ``inference``, ``run``) starts with
``$pipelines.bundles.guard('<run id>', @output_dir)``, which

- checks the command's overrides (``python -m monai.bundle run <id> --config_file ... --key value``) before anything
  runs: an override whose top-level key (``a`` of ``--a#b v``) no config file nor the metadata defines is a
  :class:`ConfigOverrideError` naming the closest existing key (:func:`difflib.get_close_matches`);
- turns an override written ``--key true`` / ``--key false`` (any case) into the boolean: fire, which parses MONAI's
  command line, only reads ``True`` / ``False`` as booleans and hands ``true`` / ``false`` over as text, which every
  ``if key:`` would take as true (``--resume false`` resumed); see :func:`coerce_flag_overrides`;
- installs a :data:`sys.excepthook` for command-line runs (``python -m monai.bundle``, ``python -m pipelines``): an
  error the user can fix (any :class:`UserFacingError`, wherever MONAI wrapped it in ``RuntimeError: Failed to
  evaluate ConfigExpression``; a checkpoint / state-dict size mismatch) ends the output with one line that names the
  file and the problem, Ctrl-C ends it with one line saying how to resume, and the full traceback goes to
  ``<output_dir>/last_error.log`` (or ``~/.cache/attention-mis/last_error.log`` when that folder does not exist yet);
  ``PIPELINES_DEBUG=1`` prints the traceback too. Other errors keep Python's usual traceback.

The overrides are read from the call of :func:`monai.bundle.scripts.run` on the stack (its ``override`` keyword
arguments, as fire parsed them from ``--key value``, ``--key=value`` or ``--a#b v``; keys of ``--args_file`` too), so
a programmatic ``monai.bundle.run(...)`` is checked as well; without such a call, ``sys.argv`` of
``python -m monai.bundle run`` is parsed the same way. MONAI's own arguments (:data:`MONAI_RUN_ARGS`) are not
overrides.
"""

from __future__ import annotations

import abc
import difflib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DEBUG_ENV",
    "MONAI_RUN_ARGS",
    "ConfigOverrideError",
    "UserFacingError",
    "check_overrides",
    "coerce_flag_overrides",
    "command_overrides",
    "error_line",
    "guard",
    "install_excepthook",
    "running_parser",
]

#: arguments of ``monai.bundle run`` (and of the workflow it creates) that are not config overrides
MONAI_RUN_ARGS = frozenset({
    "run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file",
    "workflow_name", "workflow_type", "properties_path",
})
#: set to 1 to print the full traceback before the one-line message
DEBUG_ENV = "PIPELINES_DEBUG"
_LOG_NAME = "last_error.log"
_STATE: dict[str, Any] = {"run_id": None, "output_dir": None, "start": None, "installed": False}


class UserFacingError(Exception, metaclass=abc.ABCMeta):
    """Marker base of the errors a user fixes (a dataset file, a setting, a checkpoint), not the code.

    A command-line run with the guard installed ends with one line ``<ErrorClass>: <message>`` for these, so the
    message must name the file (or setting) and the problem and, where it helps, the fix. Inherit from it next to the
    built-in base, e.g. ``class DatasetError(ValueError, UserFacingError)``; classes of other packages can be
    registered with ``UserFacingError.register(cls)``.
    """


class ConfigOverrideError(ValueError, UserFacingError):
    """A command-line override names a top-level key that no config file of the command defines."""


def _register_project_errors() -> None:
    """Mark the project's user-facing errors that do not inherit :class:`UserFacingError` yet."""
    from .run_folder import RunSettingsError

    UserFacingError.register(RunSettingsError)
    checkpoints = sys.modules.get("pipelines.handlers.checkpoints")
    if checkpoints is not None and hasattr(checkpoints, "CheckpointMismatchError"):
        UserFacingError.register(checkpoints.CheckpointMismatchError)


def _as_list(files: Any) -> list[str]:
    """Config / metadata file argument of MONAI (a path, a list, or MONAI's comma-separated string) as a list."""
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        files = str(files)
        if not os.path.isfile(files) and "," in files:
            return [f.strip() for f in files.strip("[]()").split(",") if f.strip().strip("'\"")]
        return [files]
    return [str(f) for f in files]


def _top_keys(files: Iterable[str]) -> set[str]:
    from monai.bundle import ConfigParser

    keys: set[str] = set()
    for f in files:
        content = ConfigParser.load_config_file(str(f).strip().strip("'\""))
        if isinstance(content, Mapping):
            keys.update(str(k) for k in content)
    return keys


def check_overrides(
    overrides: Mapping[str, Any] | Iterable[str],
    config_files: str | Sequence[str],
    meta_files: str | Sequence[str] | None = None,
) -> None:
    """Refuse overrides whose top-level key is not defined by any of the config files or the metadata.

    Args:
        overrides: the overrides (``{"epochs": 3, "network_def#features": [...]}``) or their keys; for a nested
            ``a#b`` only ``a`` is checked (a new sub-key of an existing component is allowed).
        config_files: every config file of the command (base and overlays).
        meta_files: the metadata file(s); their keys count as defined, and so does ``_meta_``.

    Raises:
        ConfigOverrideError: naming each unknown key, the config files and the closest defined key.
    """
    from monai.bundle.reference_resolver import ReferenceResolver
    from monai.bundle.utils import ID_SEP_KEY

    files = _as_list(config_files)
    known = _top_keys(files) | _top_keys(_as_list(meta_files)) | {"_meta_"}
    problems = []
    for key in overrides:
        key = str(key)
        if key in MONAI_RUN_ARGS:
            continue
        top = ReferenceResolver.normalize_id(key).split(ID_SEP_KEY)[0]
        if top in known:
            continue
        close = difflib.get_close_matches(top, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean --{key.replace(top, close[0], 1)}?)" if close else ""
        problems.append(f"--{key}: '{top}' is not a setting of {' + '.join(files)}{hint}")
    if problems:
        raise ConfigOverrideError("; ".join(problems))


def _parse_argv(argv: Sequence[str]) -> dict[str, Any]:
    """``--key value`` / ``--key=value`` pairs of a ``monai.bundle run`` command line (values kept as strings)."""
    args: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("--") and len(token) > 2:
            key, sep, value = token[2:].partition("=")
            if not sep:
                nxt = argv[i + 1] if i + 1 < len(argv) else None
                if nxt is not None and not nxt.startswith("--"):
                    value, i = nxt, i + 1
                else:
                    value = "True"
            args[key.replace("-", "_")] = value
        i += 1
    return args


def command_overrides() -> tuple[dict[str, Any], list[str], list[str]] | None:
    """The running ``monai.bundle run`` command: its overrides, config files and metadata files, or None.

    Read from the :func:`monai.bundle.scripts.run` call on the stack, else from ``sys.argv`` of
    ``python -m monai.bundle run``. Keys of ``--args_file`` count as overrides, as in MONAI.
    """
    from monai.bundle import ConfigParser, scripts

    args: dict[str, Any] | None = None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is scripts.run.__code__:
            loc = frame.f_locals
            args = dict(loc.get("override") or {})
            for name in ("config_file", "meta_file", "args_file"):
                if loc.get(name) is not None:
                    args[name] = loc[name]
            break
        frame = frame.f_back
    del frame
    if args is None:
        argv = sys.argv
        if len(argv) < 2 or not argv[0].replace("\\", "/").endswith("monai/bundle/__main__.py") or argv[1] != "run":
            return None
        args = _parse_argv(argv[2:])
    if args.get("args_file"):
        from_file = ConfigParser.load_config_file(str(args["args_file"]))
        args = {**dict(from_file), **args}
    configs = _as_list(args.get("config_file"))
    metas = _as_list(args.get("meta_file"))
    if not metas and configs:
        metas = [str(Path(configs[0]).parent / "metadata.json")]
    metas = [m for m in metas if os.path.isfile(m)]
    overrides = {k: v for k, v in args.items() if k not in MONAI_RUN_ARGS}
    return overrides, configs, metas


# ---- one-line errors ------------------------------------------------------------------------------------------------


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception it was raised from or during (``__cause__`` / ``__context__``), outermost first."""
    seen: list[BaseException] = []
    while exc is not None and all(exc is not s for s in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _is_size_mismatch(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("size mismatch for" in text or "Error(s) in loading state_dict" in text)


def _checkpoint_file(exc: BaseException) -> str | None:
    """The checkpoint being loaded when ``exc`` was raised (MONAI's ``CheckpointLoader.load_path`` or a local path)."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        loc = tb.tb_frame.f_locals
        for value in (getattr(loc.get("self"), "load_path", None), loc.get("load_path"), loc.get("ckpt_path")):
            if isinstance(value, (str, os.PathLike)):
                found = str(value)
        tb = tb.tb_next
    return found


def _interrupted(exc: BaseException) -> bool:
    return any(isinstance(e, KeyboardInterrupt) for e in _chain(exc))


def error_line(exc: BaseException, run_id: str | None = None, output_dir: str | None = None) -> str | None:
    """The one line that ends the output for ``exc``, or None where Python's traceback is the right output.

    Args:
        exc: the uncaught exception (possibly MONAI's ``RuntimeError`` wrapping the real one).
        run_id: the run id that was running (``training`` gets the resume hint on Ctrl-C).
        output_dir: the run's output folder, named in the resume hint.
    """
    _register_project_errors()
    if _interrupted(exc):
        if run_id in ("training", "run") and output_dir:
            return (f"Interrupted. Re-run the same command to resume: training continues from its last checkpoint "
                    f"in {output_dir}.")
        return "Interrupted. Re-run the same command to start it again."
    for e in _chain(exc):
        if isinstance(e, UserFacingError):
            return f"{type(e).__name__}: {' '.join(str(e).split())}"
    for e in _chain(exc):
        if _is_size_mismatch(e):
            lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch for" in ln]
            detail = lines[0].rstrip(".") if lines else " ".join(str(e).split())[:200]
            where = _checkpoint_file(e) or "the checkpoint"
            return (f"CheckpointMismatch: {where} does not fit the network ({detail}); use the network settings it "
                    f"was trained with, e.g. the configs in its run folder (<run>/configs/*.yaml).")
    return None


def _log_path(output_dir: str | None) -> Path:
    if output_dir and os.path.isdir(output_dir) and os.access(output_dir, os.W_OK):
        return Path(output_dir) / _LOG_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attention-mis"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / _LOG_NAME


def _excepthook(exc_type, exc, tb) -> None:
    line = error_line(exc, _STATE["run_id"], _STATE["output_dir"])
    if line is None:
        sys.__excepthook__(exc_type, exc, tb)
        return
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    try:
        log = _log_path(_STATE["output_dir"])
        log.write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n{text}")
        where = f" (full traceback: {log})"
    except OSError:
        where = ""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        sys.stderr.write(text)
    sys.stderr.write(line + where + "\n")
    sys.stderr.flush()


class _QuietFilter(logging.Filter):
    """Drops the error records (and their tracebacks) that ignite and MONAI's StatsHandler log while an interrupt
    or a user-facing error unwinds; the guard's excepthook prints the one line and logs the traceback instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        if exc is None or (record.levelno < logging.ERROR and not record.exc_info):
            return True
        return error_line(exc) is None


#: loggers that report an exception while it unwinds: MONAI's StatsHandler (its default name) and ignite's engines
_REPORTING_LOGGERS = ("monai.handlers.StatsHandler", "StatsHandler", "ignite.engine.engine.SupervisedTrainer",
                      "ignite.engine.engine.SupervisedEvaluator", "ignite.engine.engine.Engine")


def _quiet_handlers() -> None:
    """Add :class:`_QuietFilter` to the loggers that log an unwinding exception (a logger's filter sees the records
    logged on it, whatever handlers are added later) and to every handler present (records of other loggers)."""
    existing = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    loggers = [logging.getLogger()] + existing + [logging.getLogger(name) for name in _REPORTING_LOGGERS]
    for filterer in loggers + [h for lg in loggers for h in lg.handlers]:
        if not any(isinstance(f, _QuietFilter) for f in filterer.filters):
            filterer.addFilter(_QuietFilter())


def _from_command_line() -> bool:
    main = sys.argv[0].replace("\\", "/") if sys.argv else ""
    return main.endswith(("monai/bundle/__main__.py", "pipelines/__main__.py"))


def install_excepthook(run_id: str | None = None, output_dir: str | None = None) -> None:
    """Install the one-line error / Ctrl-C reporting (see the module docstring) for the rest of the process.

    Args:
        run_id: the run id being run (``training`` gets the resume hint).
        output_dir: the run's output folder (resume hint, ``last_error.log``).
    """
    _STATE.update(run_id=run_id, output_dir=None if output_dir is None else str(output_dir), installed=True)
    sys.excepthook = _excepthook
    _quiet_handlers()


_FLAG_TEXT = {"true": True, "false": False}


def running_parser() -> Any:
    """The MONAI ``ConfigParser`` whose method is on the call stack (the one evaluating the current config
    expression), or None."""
    from monai.bundle import ConfigParser

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ConfigParser):
            return candidate
        frame = frame.f_back
    return None


def coerce_flag_overrides(overrides: Mapping[str, Any], parser: Any) -> list[str]:
    """Replace the text ``"true"`` / ``"false"`` (any case, from ``--key true`` on the command line) of each override by
    the boolean, in ``parser``'s config and in its not yet resolved items, so that a running command reads
    ``--resume false`` as ``False``.

    Called by :func:`guard`, the first entry of every run id: nothing but the run's output folder has been resolved
    then. An id already resolved keeps its value (none of the boolean settings is).

    Args:
        overrides: the command's overrides (:func:`command_overrides`).
        parser: the ``monai.bundle.ConfigParser`` of the running command.

    Returns:
        the ids changed.
    """
    from monai.bundle.reference_resolver import ReferenceResolver
    from monai.bundle.utils import ID_SEP_KEY

    changed = []
    resolver = parser.ref_resolver
    for key, value in overrides.items():
        if str(key) in MONAI_RUN_ARGS or not isinstance(value, str) or value.strip().lower() not in _FLAG_TEXT:
            continue
        flag = _FLAG_TEXT[value.strip().lower()]
        id_ = ReferenceResolver.normalize_id(str(key))
        *parents, last = id_.split(ID_SEP_KEY)
        node = parser.config
        try:
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            if (node[int(last)] if isinstance(node, list) else node[last]) != value:
                continue
            node[int(last) if isinstance(node, list) else last] = flag
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        item = resolver.items.get(id_)
        if item is not None and id_ not in resolver.resolved_content:
            item.update_config(flag)
        changed.append(id_)
    return changed


def guard(run_id: str, output_dir: str | None = None, check: bool = True) -> None:
    """First entry of every run id: check the overrides, then report errors and Ctrl-C in one line.

    The excepthook is installed only for command-line runs (``python -m monai.bundle``, ``python -m pipelines``);
    the override check runs for every ``monai.bundle.run`` call.

    Args:
        run_id: the run id this entry starts (``training``, ``evaluating``, ``inference``).
        output_dir: the run's output folder.
        check: check the overrides and read ``--key true`` / ``--key false`` as booleans (false: only install the
            excepthook).

    Raises:
        ConfigOverrideError: an override names an undefined top-level key.
    """
    _STATE["start"] = time.time()
    if _from_command_line():
        install_excepthook(run_id, output_dir)
    else:
        _STATE.update(run_id=run_id, output_dir=None if output_dir is None else str(output_dir))
    if check:
        command = command_overrides()
        if command is not None and command[1]:
            check_overrides(*command)
        parser = running_parser()
        if command is not None and parser is not None:
            coerce_flag_overrides(command[0], parser)


def run_started() -> float | None:
    """When the current run id's guard ran (``time.time()``), or None."""
    return _STATE["start"]
