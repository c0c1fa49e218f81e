"""A trained run is a bundle: the run folder gets the configs, metadata and logging config MONAI needs.

At the start of training, :class:`RunBundleWriter` writes into the run's output folder

- ``configs/train.yaml``: the training configuration as it ran (every config file merged, every command-line override
  applied), so that ``--config_file <run>/configs/train.yaml`` repeats or resumes exactly this run;
- ``configs/<overlay>``: the bundle's overlays (``evaluate.yaml``; ``multi_gpu_train.yaml`` /
  ``multi_gpu_evaluate.yaml`` to continue or evaluate the run under ``torchrun``), merged after the run's
  ``train.yaml`` as in the bundle itself;
- ``configs/inference.yaml``: the bundle's stand-alone inference config with the run's network (``network_def`` and
  every top-level key it refers to) and the run's values of the settings it shares with training;
- ``configs/metadata.json`` and ``configs/logging.conf``, copied from the bundle;

next to ``models/model.pt`` (the best checkpoint, written by training). In every written config ``bundle_root`` is the
run folder, found from the config file MONAI was given (:func:`run_bundle_root`), and the output paths are relative to
it, so a copy of the folder elsewhere still works. The network's resolved settings are recorded (``run_network``) and
checked whenever the network is built from these configs (:func:`check_run_settings`): a command-line override that
changes the network (``--network_def#features``, ``--roi_size`` of a patch-size-dependent network, ...) stops with
one line naming the setting, the run's value and the fix, instead of a state-dict size mismatch.

The configuration is taken from MONAI's :class:`monai.bundle.ConfigWorkflow` that runs the training (its parser holds
the merged files with the overrides applied, see :meth:`monai.bundle.ConfigParser.update`).
"""

from __future__ import annotations

import copy
import inspect
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["RunBundleWriter", "RunSettingsError", "check_run_settings", "run_bundle_root"]

#: top-level keys never copied from the training configuration into the run's inference config
# never copied from training into a standalone config: the run ids (training's `run` list is not inference's) and the
# machine-specific keys
_NOT_SHARED = frozenset({"imports", "bundle_root", "output_dir", "device", "amp", "_meta_", "run", "initialize",
                         "finalize", "training", "evaluating", "inference"})
_HEADER = (
    "# Written by pipelines.bundles.RunBundleWriter at the start of the training run in this folder: the bundle's {name}"
    "\n# with the run's settings (every override of the training command applied). bundle_root is this run folder.\n"
)


class RunSettingsError(ValueError):
    """A command sets a network-defining setting to another value than the run folder's model was trained with."""


def _workflow():
    """The :class:`monai.bundle.ConfigWorkflow` whose run id is being executed (its method is on the call stack), or
    None."""
    from monai.bundle import ConfigWorkflow

    owners = (info.frame.f_locals.get("self") for info in inspect.stack(0))
    return next((owner for owner in owners if isinstance(owner, ConfigWorkflow)), None)


def run_bundle_root(default: str) -> str:
    """The run folder of the config files being run: the parent of their ``configs/`` folder.

    Used as ``bundle_root`` of a run folder's configs, so that the folder can be moved or copied.

    Args:
        default: returned when no MONAI workflow is running (e.g. a plain ``ConfigParser`` reading the files, or
            ``ckpt_export``, where ``--bundle_root`` replaces this key anyway): the folder at writing time.
    """
    workflow = _workflow()
    if workflow is None:
        return default
    root = Path(workflow.config_root_path)
    return str((root.parent if root.name == "configs" else root).resolve())


def check_run_settings(recorded: Mapping[str, Any], run_dir: str = "") -> bool:
    """Stop when the network being built differs from the one the run folder's model was trained with.

    The network's arguments are resolved in the running config (command-line overrides applied) and compared with
    the recorded ones by :func:`pipelines.handlers.checkpoints.compare_run_settings` (an argument set on one side only
    differs too).

    Args:
        recorded: ``network_def`` argument -> its resolved value at training (the run folder's ``run_network``; the
            target is not compared).
        run_dir: the run folder, for the message.

    Returns:
        True (evaluated as ``network_def#_requires_`` in a run folder's configs, before the network is built).

    Raises:
        RunSettingsError: one line naming every differing setting (trained -> now) and the fix.
    """
    from pipelines.handlers.checkpoints import (
        compare_run_settings,
        resolve_run_settings,
    )

    # the target is not recorded: a config holding ``_target_`` would be instantiated
    current = {k: v for k, v in resolve_run_settings(["network_def"]).items() if k != "network_def#_target_"}
    diffs = compare_run_settings({f"network_def#{k}": v for k, v in recorded.items()}, current)
    if diffs:
        raise RunSettingsError(
            f"run folder {run_dir or '.'} holds a model trained with other network settings (trained -> now): "
            f"{'; '.join(diffs)}. Drop the override (the run folder's configs hold the run's network settings) or "
            "train a new run (--output_dir)."
        )
    return True


def _refs(value: Any) -> set[str]:
    """Top-level keys referenced (``@key``, ``@key#sub``) anywhere in a raw config value."""
    from monai.bundle.reference_resolver import ReferenceResolver

    found: set[str] = set()
    if isinstance(value, str):
        found |= {r.split("#")[0] for r in ReferenceResolver.match_refs_pattern(value)}
    elif isinstance(value, Mapping):
        for v in value.values():
            found |= _refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= _refs(v)
    return found


def _relocated(relocate: Mapping[str, str]) -> dict[str, str]:
    """Config values placing ``relocate``'s keys at paths relative to ``bundle_root`` (the run folder)."""
    out = {}
    for key, rel in relocate.items():
        rel = os.path.normpath(str(rel))
        out[key] = "@bundle_root" if rel == "." else f"$os.path.normpath(os.path.join(@bundle_root, {rel!r}))"
    return out


class RunBundleWriter:
    """Write the run folder's ``configs/`` (see the module docstring) when the trainer starts, on rank 0 only.

    Attach it after the checkpoint handlers, so that a refused resume stops the run before the run folder's configs are
    replaced. The configuration is read from the running :class:`monai.bundle.ConfigWorkflow` when this object is
    created (a run id's expression); without one (no MONAI workflow) nothing is written.

    Args:
        run_dir: the run folder (the training's output folder holding ``models/``).
        bundle_root: the bundle the configuration came from (its ``configs/`` holds the overlays, ``metadata.json``,
            ``logging.conf``); when it is ``run_dir`` itself (training from a run folder) nothing is rewritten.
        relocate: top-level key -> path relative to the run folder, written into every run config that has the key,
            e.g. ``{"output_dir": "."}``.
        overlays: the bundle's overlay files of ``train.yaml`` to copy (missing ones are skipped).
        standalone: the bundle's stand-alone configs that get the run's network (``inference.yaml``).
    """

    def __init__(
        self,
        run_dir: str,
        bundle_root: str,
        relocate: Mapping[str, str] | None = None,
        overlays: Sequence[str] = ("evaluate.yaml", "multi_gpu_train.yaml", "multi_gpu_evaluate.yaml"),
        standalone: Sequence[str] = ("inference.yaml",),
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.source = Path(bundle_root).resolve() / "configs"
        self.relocate = dict(relocate or {"output_dir": "."})
        self.overlays, self.standalone = list(overlays), list(standalone)
        self.config: dict | None = None
        self.settings: dict[str, Any] = {}
        workflow = _workflow()
        if workflow is not None:
            from pipelines.handlers.checkpoints import resolve_run_settings

            self.config = copy.deepcopy(dict(workflow.parser.get()))
            self.config.pop("_meta_", None)
            network = resolve_run_settings(["network_def"], parser=workflow.parser)
            self.settings = {k.split("#", 1)[1]: v for k, v in network.items() if k != "network_def#_target_"}

    def attach(self, engine) -> RunBundleWriter:
        """Write the configs once, when ``engine`` starts (after the handlers attached before this one)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda _: self.write())
        return self

    def _checked(self, config: dict) -> dict:
        """``config`` with the run's bundle root, paths, recorded settings and their check."""
        config = dict(config)
        config["bundle_root"] = f"$pipelines.bundles.run_bundle_root({str(self.run_dir)!r})"
        config.update({k: v for k, v in _relocated(self.relocate).items() if k in config})
        config["run_network"] = copy.deepcopy(self.settings)
        config["check_run_network"] = "$pipelines.bundles.check_run_settings(@run_network, @bundle_root)"
        network = dict(config["network_def"])
        network["_requires_"] = "@check_run_network"
        config["network_def"] = network
        return config

    def write(self) -> Path | None:
        """Write ``configs/`` into the run folder; returns it (None on other ranks, without a workflow, or when the
        configuration already comes from this run folder)."""
        import torch.distributed as dist
        from monai.bundle import ConfigParser

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return None
        target = self.run_dir / "configs"
        if self.config is None or self.source == target.resolve():
            return None
        target.mkdir(parents=True, exist_ok=True)
        source_train = ConfigParser.load_config_file(str(self.source / "train.yaml"))

        written = {"train.yaml": self._checked(self.config)}
        for name in self.overlays:
            if (self.source / name).is_file():
                overlay = dict(ConfigParser.load_config_file(str(self.source / name)))
                overlay.update({k: v for k, v in _relocated(self.relocate).items() if k in overlay})
                written[name] = overlay
        for name in self.standalone:
            if not (self.source / name).is_file():
                continue
            config = dict(ConfigParser.load_config_file(str(self.source / name)))
            # the run's values of the settings shared with training that the run changed (overrides, overlays)
            for key, value in self.config.items():
                if key in config and key not in _NOT_SHARED and value != source_train.get(key, value):
                    config[key] = copy.deepcopy(value)
            # the run's network and every top-level key it refers to, transitively
            config["network_def"] = copy.deepcopy(self.config["network_def"])
            todo, seen = _refs(config["network_def"]), set()
            while todo:
                key = todo.pop()
                if key in seen or key in _NOT_SHARED or key not in self.config:
                    continue
                seen.add(key)
                config[key] = copy.deepcopy(self.config[key])
                todo |= _refs(config[key])
            written[name] = self._checked(config)

        for name, config in written.items():
            ConfigParser.export_config_file(config, str(target / name), fmt="yaml", sort_keys=False, width=120,
                                             default_flow_style=None)
            text = (target / name).read_text()
            (target / name).write_text(_HEADER.format(name=name) + text)
        for name in ("metadata.json", "logging.conf"):
            if (self.source / name).is_file():
                shutil.copyfile(self.source / name, target / name)
        return target
