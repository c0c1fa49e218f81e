"""Checkpoints of resumable bundle training: the newest interval checkpoint, best-metric state, loading weights, and
resuming only what matches.

A training's interval checkpoint (``checkpoint_epoch=<N>.pt``, the last two kept) holds the network, optimizer,
scheduler, trainer, the best training and validation metric (:class:`BestMetricState`) and the settings that define the
run (:class:`RunSettings`: dataset, fold/split, seed, network, loss, patch size, ...). :class:`ResumeCheckpointLoader`
resumes it only when those settings match the current command and refuses otherwise
(:class:`CheckpointMismatchError`, naming the file and every difference), says in the log from which epoch it resumes
or that the run already finished, and ``--resume false`` (the bundles' ``resume`` key) starts afresh with the old
checkpoints moved aside.

:func:`networks.utils.extract_model_state` (re-exported here) is the one place that turns whatever a checkpoint file holds (a bare state dict, a
training state ``{"model": ..., "optimizer": ...}``, the state of a ``DistributedDataParallel`` / ``DataParallel``
wrapper with ``module.`` key prefixes, a module) into the plain state dict of the network; :func:`load_weights`
reads a file through it.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from networks.utils import MODEL_STATE_KEYS, WRAPPER_PREFIXES, extract_model_state

__all__ = [
    'LAST_CHECKPOINT_PREFIX', 'MODEL_STATE_KEYS', 'OPTIONAL_STATE_KEYS', 'RUN_SETTINGS_KEY', 'WRAPPER_PREFIXES',
    'BestMetricState', 'CheckpointMismatchError', 'CheckpointPruner', 'ResumeCheckpointLoader', 'RunSettings',
    'attach_handlers', 'compare_run_settings', 'extract_model_state', 'interval_checkpoints', 'latest_checkpoint',
    'load_weights', 'move_checkpoints_aside', 'prune_checkpoints', 'resolve_run_settings',
]

logger = logging.getLogger(__name__)


#: ``CheckpointSaver`` writes interval checkpoints as ``checkpoint_epoch=<N>.pt``; the bundles keep the last two.
LAST_CHECKPOINT_PREFIX = "checkpoint_epoch="


def latest_checkpoint(ckpt_dir: str, prefix: str = LAST_CHECKPOINT_PREFIX) -> str | None:
    """Return the interval checkpoint with the highest epoch in ``ckpt_dir``, or ``None`` if there is none.

    Bundles use it to resume an interrupted training (:class:`ResumeCheckpointLoader` reads the newest readable one).

    Args:
        ckpt_dir: folder the training's ``CheckpointSaver`` writes to (need not exist).
        prefix: file name prefix before the epoch number.
    """
    found = interval_checkpoints(ckpt_dir, prefix)
    return found[-1] if found else None


class BestMetricState:
    """Makes an engine's best metric part of a checkpoint (``state_dict``/``load_state_dict``): a validator's best
    validation metric, or a MONAI trainer's best ``key_train_metric`` (e.g. ``train_dice``).

    Without it a resumed training forgets its best score and the first validation after resuming overwrites the
    best model even when it is worse: loading it restores the engine's best metric and seeds the engine's best-model
    savers with it (:func:`seed_best_model_savers`). Put it in both the ``CheckpointSaver`` ``save_dict`` and the
    ``CheckpointLoader`` ``load_dict`` of a training config.

    Args:
        engine: the validation engine whose ``state.best_metric`` / ``state.best_metric_epoch`` are kept.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict:
        state = self.engine.state
        return {"best_metric": getattr(state, "best_metric", -1), "best_metric_epoch": getattr(state, "best_metric_epoch", -1)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.engine.state.best_metric = state_dict["best_metric"]
        self.engine.state.best_metric_epoch = state_dict["best_metric_epoch"]
        if state_dict["best_metric_epoch"] is not None and state_dict["best_metric_epoch"] >= 1:
            seed_best_model_savers(self.engine, state_dict["best_metric"])


def _key_metric_savers(engine: Engine) -> list:
    """The MONAI ``CheckpointSaver`` s attached to ``engine`` that keep a best model by the key metric."""
    from monai.handlers import CheckpointSaver

    found: list = []
    for handlers in getattr(engine, "_event_handlers", {}).values():
        for entry in handlers:
            owner = getattr(entry[0], "__self__", None)
            if isinstance(owner, CheckpointSaver) and owner._key_metric_checkpoint is not None and owner not in found:
                found.append(owner)
    return found


def seed_best_model_savers(engine: Engine, best_metric: float) -> int:
    """Tell the best-model savers of ``engine`` (MONAI ``CheckpointSaver(save_key_metric=True)``) that a best model
    with ``best_metric`` is already on disk, so that after a resume it is replaced only by a better one.

    A saver keeps its best score in memory only (ignite's ``Checkpoint``): a resumed process starts with none, and its
    first validation would overwrite ``model.pt`` whatever its score. Savers whose folder holds no readable saved model
    (none yet, or one cut by a stopped run) are left alone. Returns how many savers were seeded.
    """
    import collections
    import types

    seeded = 0
    for saver in _key_metric_savers(engine):
        checkpoint = saver._key_metric_checkpoint
        handler = checkpoint.save_handler
        filename = getattr(handler, "filename", None) or "model.pt"
        path = os.path.join(str(saver.save_dir), filename)
        if checkpoint._saved or not os.path.isfile(path):
            continue
        try:  # a file cut by a stopped run is not a best model to keep: the next validation replaces it
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            logger.warning(f"{path} cannot be read ({type(exc).__name__}); the next validation replaces it.")
            continue
        probe = types.SimpleNamespace(state=types.SimpleNamespace(
            key_metric_name="key", metrics=collections.defaultdict(lambda: 1.0)))
        try:  # the saver's score is the metric, or its negative (key_metric_negative_sign)
            sign = float(checkpoint.score_function(probe)) if checkpoint.score_function is not None else 1.0
        except Exception:  # noqa: BLE001 - an unusual score function: assume higher is better
            sign = 1.0
        checkpoint.load_state_dict({"_saved": [(sign * float(best_metric), filename)]})
        seeded += 1
    return seeded


def attach_handlers(engine: Engine, handlers) -> Engine:
    """Attach handlers that refer to ``engine`` itself (so cannot be passed to its constructor in a config).

    Disabled config components arrive as ``None`` and are skipped. Handlers are attached in order, so put a
    ``CheckpointLoader`` first.

    Returns:
        the engine, for chaining in config expressions.
    """
    for handler in handlers or ():
        if handler is not None:
            handler.attach(engine)
    return engine


def load_weights(network: nn.Module, path: str | None, strict: bool = True, required: bool = False) -> bool:
    """Load a model state into ``network`` from a bundle checkpoint.

    Accepts everything :func:`extract_model_state` does: the ``model.pt`` a ``CheckpointSaver`` writes for the best
    metric (a bare state dict), an interval checkpoint ``{"model": state, "optimizer": ...}``, a plain state dict,
    one saved from a ``DistributedDataParallel`` wrapper (``module.`` prefixes). ``network`` may itself be wrapped.

    Args:
        network: the network to fill.
        path: checkpoint file; None or a missing file loads nothing (unless ``required``).
        strict: see :meth:`torch.nn.Module.load_state_dict`.
        required: raise when ``path`` is missing.

    Returns:
        whether weights were loaded.

    Raises:
        FileNotFoundError: ``required`` and the file does not exist.
    """
    if not path or not os.path.isfile(path):
        if required:
            raise FileNotFoundError(f"checkpoint {path} does not exist; train first or pass --ckpt_path.")
        return False
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    device = next(network.parameters()).device
    state = extract_model_state(torch.load(path, map_location=device, weights_only=True))
    network.load_state_dict(state, strict=strict)
    return True


# ---- resume only what matches ---------------------------------------------------------------------------------------

#: config keys of a component that are not its settings (MONAI's ``ConfigComponent.non_arg_keys`` less ``_target_``)
_META_KEYS = frozenset({"_disabled_", "_requires_", "_desc_", "_mode_"})
#: the name the recorded settings have in an interval checkpoint (``save_dict`` key)
RUN_SETTINGS_KEY = "run_settings"
#: entries of a training state that older checkpoints may lack; they are then left as they are, with a warning
OPTIONAL_STATE_KEYS = frozenset({"training_best", "validation", "lr_scheduler"})


class CheckpointMismatchError(ValueError):
    """A training would resume a checkpoint written with other run settings (dataset, fold, network, loss, patch size,
    ...). The message names the checkpoint file, every differing setting (old -> new) and how to proceed."""


def _plain(value: Any) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` reads back (tuples as lists, devices as text);
    anything else by its type name."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value) if isinstance(value, torch.device) else f"<{type(value).__module__}.{type(value).__qualname__}>"


def resolve_run_settings(ids: Sequence[str], parser=None) -> dict[str, Any]:
    """The resolved values of the config ``ids`` that define a run, flattened to ``id`` / ``id#arg`` -> plain value.

    A component (``network_def``, ``loss``) is recorded argument by argument (``network_def#attention``,
    ``network_def#features`` when set, ``loss#_target_``, ...), each resolved as the run uses it (references and
    expressions evaluated, command-line overrides applied); the component itself is not instantiated again. Folder
    settings (ids ending in ``_dir``) are recorded as real paths, so a relative and an absolute spelling agree.

    Args:
        ids: top-level config ids, e.g. ``["dataset_dir", "num_folds", "fold", "seed", "network_def", "loss",
            "roi_size"]``; ids missing from the config are skipped.
        parser: the ``monai.bundle.ConfigParser`` to read; default: the one evaluating the calling config expression.

    Raises:
        RuntimeError: no parser given and none is running.
    """
    from ..bundles.guards import running_parser

    parser = parser if parser is not None else running_parser()
    if parser is None:
        raise RuntimeError("resolve_run_settings needs a monai.bundle.ConfigParser (call it from a bundle config).")
    settings: dict[str, Any] = {}
    for id_ in ids:
        if id_ not in parser:
            continue
        raw = parser.get(id_)
        if isinstance(raw, Mapping) and not str(raw.get("_target_", "")).startswith("$"):
            for arg in raw:
                if arg not in _META_KEYS:
                    settings[f"{id_}#{arg}"] = _plain(parser.get_parsed_content(f"{id_}#{arg}"))
        else:
            value = _plain(parser.get_parsed_content(id_))
            if id_.endswith("_dir") and isinstance(value, str):
                value = os.path.realpath(value)
            settings[id_] = value
    return settings


def compare_run_settings(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The settings that differ between a checkpoint's run and the current one, as ``"key: old -> new"``.

    A key present on one side only (e.g. ``network_def#features`` set now but left to the network's default then)
    differs too, shown as ``(not set)``. Lists and tuples compare by value.
    """
    missing = "(not set)"
    diffs = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, missing), current.get(key, missing)
        if _plain(old) != _plain(new):
            diffs.append(f"{key}: {old!r} -> {new!r}" if missing not in (old, new) else
                         f"{key}: {old if old == missing else repr(old)} -> {new if new == missing else repr(new)}")
    return diffs


class RunSettings:
    """The settings that define a training run, stored in its interval checkpoints (``state_dict``) and read back
    from one (``load_state_dict`` keeps them in :attr:`loaded`; comparing is :class:`ResumeCheckpointLoader`'s job).

    Args:
        settings: setting -> plain value, e.g. :func:`resolve_run_settings`'s result.
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = {str(k): _plain(v) for k, v in settings.items()}
        self.loaded: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, ids: Sequence[str]) -> RunSettings:
        """The settings of ``ids`` in the running bundle config (see :func:`resolve_run_settings`)."""
        return cls(resolve_run_settings(ids))

    def state_dict(self) -> dict:
        return dict(self.settings)

    def load_state_dict(self, state_dict: Mapping) -> None:
        self.loaded = dict(state_dict)

    def differences(self, recorded: Mapping[str, Any]) -> list[str]:
        """``"key: old -> new"`` for every setting that differs from ``recorded`` (:func:`compare_run_settings`)."""
        return compare_run_settings(recorded, self.settings)


def _is_rank0() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def interval_checkpoints(ckpt_dir: str, prefix: str = LAST_CHECKPOINT_PREFIX) -> list[str]:
    """The interval checkpoints in ``ckpt_dir``, oldest epoch first (files that do not end in an epoch are ignored)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.pt$")
    found = []
    for path in glob.glob(os.path.join(glob.escape(ckpt_dir), f"{glob.escape(prefix)}*.pt")):
        match = pattern.search(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def prune_checkpoints(ckpt_dir: str, keep: int, prefix: str = LAST_CHECKPOINT_PREFIX) -> list[str]:
    """Delete all but the ``keep`` newest interval checkpoints of ``ckpt_dir`` (rank 0 only); returns the deleted.

    ``CheckpointSaver(n_saved=...)`` only removes the files its own process wrote, so without this the checkpoints of
    every earlier (interrupted) process of a resumed run would stay.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}.")
    if not _is_rank0():
        return []
    old = interval_checkpoints(ckpt_dir, prefix)[:-keep]
    for path in old:
        os.remove(path)
    return old


def move_checkpoints_aside(ckpt_dir: str, prefix: str = LAST_CHECKPOINT_PREFIX, best_name: str = "model.pt") -> str | None:
    """Start a fresh run in ``ckpt_dir``: move its interval checkpoints and best model into a new sub-folder
    ``previous-<YYYYmmdd-HHMMSS>`` (nothing is deleted; rank 0 moves, every rank waits for it).

    Returns:
        the folder they were moved to, or None when there was nothing to move.
    """
    moved = None
    if _is_rank0():
        files = interval_checkpoints(ckpt_dir, prefix)
        if os.path.isfile(os.path.join(ckpt_dir, best_name)):
            files.append(os.path.join(ckpt_dir, best_name))
        if files:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            moved = os.path.join(ckpt_dir, f"previous-{stamp}")
            n = 1
            while os.path.exists(moved):
                n += 1
                moved = os.path.join(ckpt_dir, f"previous-{stamp}-{n}")
            os.makedirs(moved)
            for path in files:
                shutil.move(path, os.path.join(moved, os.path.basename(path)))
            logger.info(
                f"starting a fresh run in {os.path.dirname(os.path.abspath(ckpt_dir))} (resume is false): moved the "
                f"previous run's {', '.join(os.path.basename(p) for p in files)} to {moved}."
            )
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return moved


class ResumeCheckpointLoader:
    """Resume a training from the newest interval checkpoint of ``ckpt_dir``, only when it is the same run.

    When the trainer starts (before any epoch), it reads the newest interval checkpoint (an unreadable one, e.g. cut
    by a crash while writing, is skipped for the one before it) and

    - refuses it (:class:`CheckpointMismatchError`, before anything is loaded) when the run settings recorded in it
      (``run_settings``, :class:`RunSettings`) differ from the current ones: dataset, fold/split, network, loss,
      patch size, ...; the message lists every difference (old -> new) and the two ways on: another
      ``--output_dir``, or ``--resume false``;
    - loads every entry of ``load_dict`` it holds (network, optimizer, scheduler, trainer, best-metric states);
    - says in the log ``resuming from epoch N of M (checkpoint <file>)``, or, when the run already finished all its
      epochs, ``run in <dir> already finished epoch M of M; ...``: the trainer then runs no epoch;
    - deletes interval checkpoints beyond the newest ``keep_last`` (those of earlier processes).

    With ``resume=False`` the existing checkpoints are moved aside when this object is created
    (:func:`move_checkpoints_aside`), so the run starts fresh and nothing is lost. A checkpoint written before run
    settings were recorded is resumed with a warning that it could not be checked.

    Args:
        ckpt_dir: the folder of the training's ``CheckpointSaver``.
        load_dict: name -> object with ``load_state_dict`` (the ``CheckpointSaver``'s ``save_dict``); entries
            in :data:`OPTIONAL_STATE_KEYS` missing from an older checkpoint are skipped with a warning.
        settings: the current run settings; None: not checked.
        resume: False starts fresh (see above).
        map_location: ``torch.load``'s ``map_location`` (the training device).
        keep_last: interval checkpoints to keep (the ``CheckpointSaver``'s ``n_saved``).
        prefix: interval checkpoint file name prefix.
    """

    def __init__(
        self,
        ckpt_dir: str,
        load_dict: Mapping[str, Any],
        settings: RunSettings | None = None,
        resume: bool = True,
        map_location=None,
        keep_last: int = 2,
        prefix: str = LAST_CHECKPOINT_PREFIX,
    ) -> None:
        self.ckpt_dir = ckpt_dir
        self.load_dict = {k: v for k, v in load_dict.items() if k != RUN_SETTINGS_KEY}
        self.settings = settings
        self.map_location = map_location
        self.keep_last = keep_last
        self.prefix = prefix
        self.resumed_from: str | None = None
        if not resume:
            move_checkpoints_aside(ckpt_dir, prefix)

    @property
    def run_dir(self) -> str:
        """The run folder: the parent of ``ckpt_dir``."""
        return os.path.dirname(os.path.abspath(self.ckpt_dir))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def _newest_readable(self) -> tuple[str, dict] | None:
        for path in reversed(interval_checkpoints(self.ckpt_dir, self.prefix)):
            try:
                return path, torch.load(path, map_location=self.map_location, weights_only=True)
            except Exception as e:  # a truncated or foreign file: fall back to the previous epoch's
                logger.warning(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); trying the one before it.")
        return None

    def _refuse(self, path: str, diffs: Sequence[str]) -> CheckpointMismatchError:
        return CheckpointMismatchError(
            f"refusing to resume the run in {self.run_dir}: its checkpoint {path} was written with other settings "
            f"({'; '.join(diffs)}), and continuing it would mix two runs (e.g. another fold's validation cases were "
            "its training cases). Repeat the run's settings to continue it, start a new run in another folder "
            "(--output_dir <new folder>), or start afresh in this folder with --resume false (its checkpoints are "
            f"moved to {os.path.join(self.ckpt_dir, 'previous-<date-time>')}, nothing is deleted)."
        )

    def __call__(self, engine: Engine) -> None:
        found = self._newest_readable()
        if found is None:
            logger.info(f"starting a new run in {self.run_dir} (no checkpoint to resume in {self.ckpt_dir}).")
            return
        path, checkpoint = found
        if self.settings is not None:
            recorded = checkpoint.get(RUN_SETTINGS_KEY)
            if recorded is None:
                logger.warning(f"checkpoint {path} records no run settings (written by an older version): resuming "
                               "it without checking that dataset, fold, network, loss and patch size match.")
            else:
                diffs = self.settings.differences(recorded)
                if diffs:
                    raise self._refuse(path, diffs)
        missing = [k for k in self.load_dict if k not in checkpoint]
        required = [k for k in missing if k not in OPTIONAL_STATE_KEYS]
        if required:
            raise CheckpointMismatchError(f"checkpoint {path} lacks {', '.join(required)}; it is not a training "
                                          "checkpoint of this bundle. Use another --output_dir or --resume false.")
        if missing:
            logger.warning(f"checkpoint {path} has no {', '.join(missing)} (older version); they start afresh.")
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load={k: v for k, v in self.load_dict.items() if k in checkpoint},
                                checkpoint=checkpoint)
        epoch = engine.state.epoch
        engine.state.max_epochs = max_epochs
        self.resumed_from = path
        if max_epochs is not None and epoch >= max_epochs:
            ran = checkpoint.get("trainer", {}).get("max_epochs", epoch)
            logger.info(
                f"run in {self.run_dir} already finished epoch {epoch} of {ran} (checkpoint {path}); nothing to "
                f"train{f' with --epochs {max_epochs}' if max_epochs != ran else ''}. Use --epochs to continue or "
                "--output_dir for a new run."
            )  # the trainer's epoch is now its max_epochs: it runs no epoch
        else:
            logger.info(f"resuming from epoch {epoch} of {max_epochs} (checkpoint {path}).")
        prune_checkpoints(self.ckpt_dir, self.keep_last, self.prefix)


class CheckpointPruner:
    """After every epoch's interval checkpoint, delete all but the newest ``keep`` (:func:`prune_checkpoints`);
    attach it after the ``CheckpointSaver``."""

    def __init__(self, ckpt_dir: str, keep: int = 2, prefix: str = LAST_CHECKPOINT_PREFIX) -> None:
        self.ckpt_dir, self.keep, self.prefix = ckpt_dir, keep, prefix

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        prune_checkpoints(self.ckpt_dir, self.keep, self.prefix)
