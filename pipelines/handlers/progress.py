"""Progress of long runs: a bar with epochs, iterations and ETA on an interactive terminal, nothing in logs and CI.

Every bundle has a top-level ``progress`` key (``auto``, ``on`` or ``off``; YAML also reads ``on``/``off``/``true``/
``false`` as booleans, which mean the same) and derives ``show_progress`` from it::

    progress: auto
    show_progress: $pipelines.handlers.progress_enabled(@progress)

``auto`` shows the bar when standard error is a terminal (``sys.stderr.isatty()``); ``on`` always; ``off`` never.
Under ``torchrun`` only rank 0 shows it. The bar is ignite's ``ProgressBar`` (tqdm): ``Epoch [e/E]``, the
iteration within the epoch, elapsed and remaining time.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import IO

import ignite.distributed as idist

__all__ = ["PROGRESS_MODES", "announce", "attach_progress", "overall_progress", "progress_enabled", "progress_handlers"]

#: The values of a bundle's ``progress`` key.
PROGRESS_MODES = ("auto", "on", "off")


def _mode(progress: str | bool | None) -> str:
    if progress is None:
        return "auto"
    if isinstance(progress, bool):
        return "on" if progress else "off"
    mode = str(progress).strip().lower()
    mode = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(mode, mode)
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {PROGRESS_MODES} (or a boolean), got {progress!r}.")
    return mode


def progress_enabled(progress: str | bool | None = "auto", stream: IO | None = None) -> bool:
    """Whether a progress bar is shown.

    Args:
        progress: ``"auto"`` (when ``stream`` is an interactive terminal), ``"on"`` or ``"off"``; booleans mean
            ``"on"`` / ``"off"``.
        stream: the stream the bar writes to; default ``sys.stderr`` (tqdm's).

    Returns:
        ``True`` to show it; always ``False`` on ranks other than 0 of a distributed run.

    Raises:
        ValueError: for another value of ``progress``.
    """
    mode = _mode(progress)
    if mode == "off" or idist.get_rank() > 0:
        return False
    if mode == "on":
        return True
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def progress_handlers(progress: str | bool | None = "auto", stream: IO | None = None, persist: bool = False) -> list:
    """``[ignite.handlers.ProgressBar]`` when :func:`progress_enabled`, else ``[]``, for a trainer's handler list.

    Args:
        progress: see :func:`progress_enabled`.
        stream: see :func:`progress_enabled`; the bar writes to it (default ``sys.stderr``).
        persist: keep the bar of each finished epoch on screen.
    """
    if not progress_enabled(progress, stream):
        return []
    from ignite.handlers import ProgressBar

    return [ProgressBar(persist=persist) if stream is None else ProgressBar(persist=persist, file=stream)]


def attach_progress(engine, progress: str | bool | None = "auto", stream: IO | None = None, persist: bool = False):
    """Attach a progress bar to ``engine`` (an ignite ``Engine``, e.g. MONAI's ``SupervisedTrainer``) when
    :func:`progress_enabled`.

    Returns:
        the attached ``ProgressBar``, or ``None``.
    """
    handlers = progress_handlers(progress, stream, persist=persist)
    for handler in handlers:
        handler.attach(engine)
    return handlers[0] if handlers else None


def overall_progress(items: Iterable, progress: str | bool | None = "auto", desc: str = "", unit: str = "it",
                     total: int | None = None):
    """``items`` wrapped in a tqdm bar when :func:`progress_enabled` (a sweep's cells, a cross-validation's folds),
    else ``items`` unchanged."""
    if not progress_enabled(progress):
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, total=total)


def announce(logger: logging.Logger, message: str) -> None:
    """Log ``message`` at INFO on ``logger``; when logging is not configured (no handler would show it), print it
    instead (through tqdm, so a progress bar stays intact), so a command's first lines are not lost before a bundle
    configures logging."""
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message)
    else:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stdout)
