"""Experiment sweeps: run a bundle over a grid of (dataset, backbone, attention, fold) cells and tabulate.

The grid lives in a YAML file (``configs/experiments/attention_ablation.yaml``); see :func:`load_sweep` for its keys.
Every cell is an ordinary bundle training with overrides, so what a sweep measures is exactly what a user gets
from ``python -m monai.bundle run training``.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["Cell", "load_sweep", "expand_cells", "run_cell", "run_sweep", "summarise", "markdown_table", "plot_bars"]

logger = logging.getLogger(__name__)

_KEYS = ("output_dir", "datasets", "backbones", "attentions", "exclude", "folds", "overrides", "dataset_overrides")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep."""

    dataset: str
    bundle: str
    backbone: str
    attention: str
    fold: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.backbone}/{self.attention}/fold{self.fold}"


def load_sweep(path: str, profile: str | None = None, **changes) -> dict:
    """Read a sweep file, apply a profile and command-line changes.

    Keys: ``output_dir``; ``datasets`` (name -> ``{bundle: <bundle name>}``); ``backbones``; ``attentions``;
    ``exclude`` (list of partial cells, e.g. ``{backbone: vnet, attention: pe}``); ``folds``; ``overrides``
    (bundle overrides for every cell); ``dataset_overrides`` (name -> overrides); ``profiles`` (name -> any of
    these keys, replacing the top-level values; ``overrides`` and ``dataset_overrides`` are merged instead).
    A profile's or a change's ``datasets`` may be a list of names, selecting from the top-level mapping.

    Raises:
        ValueError: for an unknown profile, an unknown key or an unknown dataset name.
    """
    with open(path) as f:
        spec = yaml.safe_load(f) or {}
    profiles = spec.pop("profiles", {}) or {}
    unknown = set(spec) - set(_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown sweep keys {sorted(unknown)}; allowed: {list(_KEYS)}.")
    layers = []
    if profile is not None:
        if profile not in profiles:
            raise ValueError(f"{path}: no profile {profile!r}; available: {sorted(profiles)}.")
        layers.append(profiles[profile])
    layers.append({k: v for k, v in changes.items() if v is not None})
    all_datasets = dict(spec.get("datasets", {}))
    for layer in layers:
        for key, value in layer.items():
            if key not in _KEYS:
                raise ValueError(f"unknown sweep key {key!r}; allowed: {list(_KEYS)}.")
            if key in ("overrides", "dataset_overrides"):
                merged = dict(spec.get(key) or {})
                for k, v in (value or {}).items():
                    merged[k] = dict(merged.get(k, {}), **v) if key == "dataset_overrides" else v
                spec[key] = merged
            elif key == "datasets" and isinstance(value, (list, tuple)):
                missing = [d for d in value if d not in all_datasets]
                if missing:
                    raise ValueError(f"unknown datasets {missing}; the sweep file defines {sorted(all_datasets)}.")
                spec[key] = {d: all_datasets[d] for d in value}
            else:
                spec[key] = value
    for key, default in (("exclude", []), ("overrides", {}), ("dataset_overrides", {})):
        spec[key] = spec.get(key) or default
    return spec


def expand_cells(spec: dict) -> list[Cell]:
    """All cells of the grid in a stable order, without the excluded combinations."""
    cells = []
    for (dataset, info), backbone, attention, fold in itertools.product(
        spec["datasets"].items(), spec["backbones"], spec["attentions"], spec["folds"]
    ):
        cell = Cell(dataset, info["bundle"], backbone, attention, int(fold))
        if any(all(getattr(cell, k) == v for k, v in rule.items()) for rule in spec["exclude"]):
            continue
        cells.append(cell)
    return cells


def run_cell(cell: Cell, output_dir: str, overrides: dict, dataset: dict | None = None) -> dict:
    """Train one cell with its bundle and return its result row (also written to ``result.json``).

    ``dataset`` is the cell's ``datasets`` entry: besides ``bundle`` it may name ``overlays`` (config files merged
    after ``train.yaml``, e.g. ``[cpu.yaml]``) and ``keys`` (the override key of each grid axis; default
    ``{backbone: network_def#backbone, attention: network_def#attention}``, e.g. ``{backbone: encoder, attention:
    decoder}`` for a bundle with top-level ``encoder`` / ``decoder`` keys).
    """
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    from ..bundles import bundle_root

    configs = Path(bundle_root(cell.bundle)) / "configs"
    override = dict(overrides)
    keys = {"backbone": "network_def#backbone", "attention": "network_def#attention", **(dataset or {}).get("keys", {})}
    override.update(
        {"fold": cell.fold, keys["backbone"]: cell.backbone, keys["attention"]: cell.attention,
         "output_dir": os.path.abspath(output_dir)}
    )
    wf = ConfigWorkflow(
        config_file=[str(configs / name) for name in ["train.yaml", *(dataset or {}).get("overlays", [])]],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"), workflow_type=None, **override,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    network = wf.parser.get_parsed_content("network")
    step_times: list[float] = []
    started: dict = {}
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: started.__setitem__("t", time.perf_counter()))
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: step_times.append(time.perf_counter() - started["t"])
    )
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    metrics = {k: float(v) for k, v in evaluator.state.metrics.items() if isinstance(v, (int, float))}
    wf.finalize()
    timed = step_times[1:] or step_times  # the first step includes one-off set-up
    row = {
        "dataset": cell.dataset, "backbone": cell.backbone, "attention": cell.attention, "fold": cell.fold,
        "val_dice": float(evaluator.state.best_metric),
        "params": int(sum(p.numel() for p in network.parameters())),
        "sec_per_step": float(sum(timed) / len(timed)) if timed else float("nan"),
        **{f"last_{k}": v for k, v in metrics.items()},
    }
    with open(os.path.join(output_dir, "result.json"), "w") as f:
        json.dump(row, f, indent=2)
    return row


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarise(rows: list[dict]) -> list[dict]:
    """Aggregate fold rows into one row per (dataset, backbone, attention): Dice mean/std, params, s/step."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["backbone"], row["attention"]), []).append(row)
    out = []
    for (dataset, backbone, attention), members in groups.items():
        mean, std = _mean_std([m["val_dice"] for m in members])
        out.append({
            "dataset": dataset, "backbone": backbone, "attention": attention, "folds": len(members),
            "dice_mean": mean, "dice_std": std, "params": members[0]["params"],
            "sec_per_step": _mean_std([m["sec_per_step"] for m in members])[0],
        })
    return out


def markdown_table(summary: list[dict], attentions: Sequence[str]) -> str:
    """The paper-shaped table: a row per backbone and dataset, a column per attention (Dice mean ± std),
    then a second table with parameter counts and seconds per training step."""
    index = {(s["dataset"], s["backbone"], s["attention"]): s for s in summary}
    rows_keys = sorted({(s["backbone"], s["dataset"]) for s in summary})
    cols = [a for a in attentions if any(s["attention"] == a for s in summary)]
    lines = ["| backbone | dataset | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for backbone, dataset in rows_keys:
        cells = []
        for a in cols:
            s = index.get((dataset, backbone, a))
            cells.append("-" if s is None else f"{s['dice_mean']:.4f} ± {s['dice_std']:.4f}")
        lines.append(f"| {backbone} | {dataset} | " + " | ".join(cells) + " |")
    lines += ["", "| backbone | dataset | attention | parameters | s / training step |", "|---|---|---|---|---|"]
    for backbone, dataset in rows_keys:
        for a in cols:
            s = index.get((dataset, backbone, a))
            if s is not None:
                lines.append(f"| {backbone} | {dataset} | {a} | {s['params']:,} | {s['sec_per_step']:.3f} |")
    return "\n".join(lines) + "\n"


def plot_bars(summary: list[dict], attentions: Sequence[str], path: str) -> str:
    """Grouped bar plot of Dice (mean ± std over folds): a group per backbone/dataset, a bar per attention."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(s["backbone"], s["dataset"]) for s in summary})
    cols = [a for a in attentions if any(s["attention"] == a for s in summary)]
    index = {(s["dataset"], s["backbone"], s["attention"]): s for s in summary}
    width = 0.8 / max(len(cols), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) * max(len(cols), 1) * 0.5), 4))
    for j, a in enumerate(cols):
        xs, ys, es = [], [], []
        for i, (backbone, dataset) in enumerate(groups):
            s = index.get((dataset, backbone, a))
            if s is not None:
                xs.append(i + (j - (len(cols) - 1) / 2) * width)
                ys.append(s["dice_mean"])
                es.append(s["dice_std"])
        ax.bar(xs, ys, width, yerr=es, capsize=3, label=a)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{b}\n{d}" for b, d in groups])
    ax.set_ylabel("validation Dice (mean ± std over folds)")
    ax.set_ylim(0, 1)
    ax.legend(title="attention", ncol=min(len(cols), 4), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_sweep(path: str, profile: str | None = None, progress: str | bool = "auto", **changes) -> dict:
    """Run (or resume) a sweep and write ``results.csv``, ``summary.csv``, ``table.md`` and ``dice.png``.

    Args:
        path: the sweep YAML file.
        profile: a profile of the file to apply (e.g. ``"demo"``).
        progress: an overall bar over the cells: ``"auto"`` (on an interactive terminal), ``"on"``, ``"off"``
            (:func:`pipelines.handlers.progress_enabled`); each cell is logged either way ("cell 3/12: ...").
        changes: top-level keys to replace (``datasets``, ``attentions``, ``folds``, ``overrides``, ...).

    Returns:
        paths of the written files and the number of cells run and skipped.
    """
    spec = load_sweep(path, profile, **changes)
    out = Path(spec["output_dir"]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cells = expand_cells(spec)
    rows, ran, skipped = [], 0, 0
    from ..handlers.progress import announce, overall_progress

    for index, cell in enumerate(overall_progress(cells, progress, desc="sweep", unit="cell"), start=1):
        label = f"cell {index}/{len(cells)}: {cell.dataset} {cell.backbone} {cell.attention} fold {cell.fold}"
        cell_dir = out / cell.name
        result = cell_dir / "result.json"
        if result.is_file():
            with open(result) as f:
                rows.append(json.load(f))
            skipped += 1
            announce(logger, f"[sweep] {label} (finished, skipped)")
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        overrides = dict(spec["overrides"])
        overrides.update(spec["dataset_overrides"].get(cell.dataset, {}))
        announce(logger, f"[sweep] {label} -> {cell_dir}")
        rows.append(run_cell(cell, str(cell_dir), overrides, spec["datasets"][cell.dataset]))
        ran += 1
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k.startswith("last_"), k))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]) if summary else ["dataset"])
        writer.writeheader()
        writer.writerows(summary)
    table = markdown_table(summary, spec["attentions"])
    (out / "table.md").write_text(table)
    plot = plot_bars(summary, spec["attentions"], str(out / "dice.png")) if summary else None
    print(table)
    return {"results": str(out / "results.csv"), "summary": str(out / "summary.csv"), "table": str(out / "table.md"),
            "plot": plot, "ran": ran, "skipped": skipped}
