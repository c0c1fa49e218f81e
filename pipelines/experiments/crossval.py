"""Cross-validation as one command: train every fold of a bundle, evaluate each, pool the out-of-fold results.

``python -m pipelines cross-validate <bundle> --num_folds 3 [--output_dir runs/<bundle>_cv] [--overlays "[cpu.yaml]"]
[--<key> <value> ...]`` (:func:`cross_validate`) works with any bundle whose ``train.yaml`` has the top-level keys
``num_folds``, ``fold``, ``seed``, ``output_dir`` and ``dataset_dir`` (the split, e.g. stratified by class, is the
bundle's own ``kfold_split``). For each fold ``i``:

1. the bundle's ``training`` run id (``train.yaml`` + overlays, ``fold=i``) into ``<output_dir>/fold<i>``, an ordinary
   run folder (a bundle; an interrupted fold resumes from its last checkpoint when the command is run again);
2. the bundle's ``evaluating`` run id (``train.yaml`` + ``evaluate.yaml`` + overlays) on that fold's validation split
   (``<output_dir>/fold<i>/eval``);
3. ``<output_dir>/fold<i>/cv_fold.json`` with the fold's metrics, its run folder (the bundle's
   ``run_bundle_writer#run_dir``: ``fold<i>`` itself, or e.g. ``fold<i>/stage2`` for a bundle trained in stages) and
   its final model (the ``ckpt_path`` of the run folder's ``configs/inference.yaml``): a fold that has it is skipped
   next time.

Then ``<output_dir>/cv_summary.{json,csv,md}``: every fold's metrics (from its ``eval/summary.json``) with mean and
sample SD over folds, and pooled out-of-fold metrics where the evaluation writes per-case results: the folds'
``predictions.csv`` concatenated and re-scored with :func:`pipelines.metrics.classification.classification_report`,
the rows of per-case metric tables (``metrics.csv``, ``segmentation.csv``, ``localisation.csv``) concatenated and
summarised with :func:`pipelines.evaluation.reports.summarize_columns`, over all cases and, where the fold's report
splits its table by class (a ``summary.json`` section named like the table with ``lesion_classes``, as
:class:`pipelines.evaluation.SegmentationSubsetReportHandler` writes), also over the cases of those classes.
``<output_dir>/configs/ensemble.yaml`` is an inference overlay of a fold's run-folder ``inference.yaml`` averaging the
fold models (:mod:`pipelines.predictors.ensemble`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

logger = logging.getLogger(__name__)

__all__ = [
    "PER_CASE_TABLES",
    "cross_validate",
    "flatten_summary",
    "fold_run_dir",
    "fold_table",
    "pool_per_case",
    "pool_predictions",
    "run_checkpoint",
    "summarise_cross_validation",
    "table_subsets",
    "write_ensemble_overlay",
]

#: Per-case tables of an evaluation folder whose rows are pooled over folds (numeric columns summarised).
PER_CASE_TABLES = ("metrics.csv", "segmentation.csv", "localisation.csv")
FOLD_RESULT = "cv_fold.json"


def _workflow(configs: Path, files: Sequence[str], run_id: str, overrides: Mapping[str, Any]):
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=[str(configs / name) for name in files], meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"), workflow_type=None, run_id=run_id, **dict(overrides),
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def flatten_summary(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The point values of an evaluation's ``summary.json`` as ``{name: value}``.

    A mapping with ``"mean"`` (segmentation columns, report sections) gives its mean, one with ``"value"``
    (:func:`~pipelines.metrics.classification.classification_report` metrics) its value; other mappings are walked
    with their keys joined by ``/`` (``metrics/`` is dropped); lists and strings are left out.
    """
    out: dict[str, float] = {}
    for key, value in summary.items():
        if not isinstance(value, Mapping):
            continue
        name = f"{prefix}{key}"
        if "mean" in value and isinstance(value["mean"], (int, float)):
            out[name] = float(value["mean"])
        elif "value" in value and isinstance(value["value"], (int, float)):
            out[name] = float(value["value"])
        else:
            out.update(flatten_summary(value, "" if key == "metrics" and not prefix else f"{name}/"))
    return out


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pool_predictions(paths: Sequence[str | Path], n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Concatenate the folds' ``predictions.csv`` (``case_id, label, prediction, prob_<class>...``) and score them.

    Returns:
        :func:`~pipelines.metrics.classification.classification_report` of the pooled cases, plus ``"folds"``.

    Raises:
        ValueError: naming a file whose class columns differ from the first file's, or an unknown label.
    """
    from ..metrics.classification import classification_report

    names: list[str] | None = None
    y_true, y_prob = [], []
    for path in paths:
        rows = _read_rows(Path(path))
        if not rows:
            continue
        columns = [c[len("prob_"):] for c in rows[0] if c.startswith("prob_")]
        if names is None:
            names = columns
        elif columns != names:
            raise ValueError(f"{path}: class columns {columns} differ from the other folds' {names}.")
        for row in rows:
            if row["label"] not in names:
                raise ValueError(f"{path}: case {row.get('case_id')!r} has label {row['label']!r}, not in {names}.")
            y_true.append(names.index(row["label"]))
            y_prob.append([float(row[f"prob_{n}"]) for n in names])
    if names is None:
        raise ValueError(f"no predictions in {[str(p) for p in paths]}.")
    prob = np.asarray(y_prob, dtype=np.float64)
    report = classification_report(np.asarray(y_true), prob[:, 1] if prob.shape[1] == 2 else prob, names,
                                   n_resamples=n_resamples, seed=seed)
    report["folds"] = len(paths)
    return report


def pool_per_case(
    paths: Sequence[str | Path],
    n_resamples: int = 1000,
    seed: int = 0,
    subsets: Mapping[str, Sequence[str]] | None = None,
    subset_key: str = "class",
) -> dict[str, Any]:
    """Concatenate per-case tables of the folds and summarise every numeric column (mean, std, median, bootstrap CI,
    n over the pooled cases; :func:`~pipelines.evaluation.reports.summarize_columns`; ``n_resamples`` 0: NaN
    intervals).

    Args:
        paths: the folds' tables (``case_id`` and one column per metric, other text columns ignored).
        n_resamples: bootstrap resamples of each mean's CI.
        seed: bootstrap seed.
        subsets: ``{name: values}``: also summarise the rows whose ``subset_key`` column is one of ``values``, e.g.
            ``{"lesion": ["benign", "malignant"]}``.
        subset_key: the column that ``subsets`` select on.

    Returns:
        ``{column: stats}``; with ``subsets``, ``{"all": {column: stats}, <name>: {column: stats}, ...}`` (a subset
        without rows has ``n`` 0 and NaN statistics).

    Raises:
        ValueError: ``subsets`` and a table without the ``subset_key`` column (named).
    """
    from ..evaluation.reports import summarize_columns

    tables = [(Path(path), _read_rows(Path(path))) for path in paths]
    rows = [row for _, table in tables for row in table]
    if not rows:
        return {}
    if subsets:
        bad = [str(path) for path, table in tables if table and subset_key not in table[0]]
        if bad:
            raise ValueError(f"{bad}: no {subset_key!r} column to select the subsets {sorted(subsets)} by.")

    def numeric(column: str) -> bool:
        try:
            [float(r[column]) for r in rows]
        except (TypeError, ValueError):
            return False
        return True

    columns = [c for c in rows[0] if c != "case_id" and c != subset_key and numeric(c)]

    def summarise(selected: list[dict[str, str]]) -> dict[str, dict[str, float]]:
        summary = summarize_columns(selected, columns, n_resamples=max(int(n_resamples), 1), seed=seed)
        if n_resamples <= 0:  # no intervals, as classification_report with n_resamples=0
            for stats in summary.values():
                stats["ci_low"] = stats["ci_high"] = float("nan")
        return summary

    if not subsets:
        return summarise(rows)
    out = {"all": summarise(rows)}
    for name, values in subsets.items():
        wanted = {str(v) for v in values}
        out[str(name)] = summarise([r for r in rows if r[subset_key] in wanted])
    return out


def table_subsets(eval_dirs: Sequence[str | Path], table: str) -> dict[str, list[str]] | None:
    """The class subsets of the per-case ``table`` that the folds' reports summarise separately.

    A fold's ``summary.json`` section named like the table (``segmentation`` for ``segmentation.csv``) with
    ``lesion_classes`` (:class:`~pipelines.evaluation.SegmentationSubsetReportHandler`) gives ``{"lesion": [class
    names]}``; None when no fold has one.

    Raises:
        ValueError: the folds disagree (naming the first differing file).
    """
    found: dict[str, list[str]] | None = None
    first = None
    for folder in eval_dirs:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            continue
        with open(path) as f:
            section = json.load(f).get(Path(table).stem)
        subsets = ({"lesion": [str(c) for c in section["lesion_classes"]]}
                   if isinstance(section, Mapping) and "lesion_classes" in section else None)
        if first is None:
            found, first = subsets, path
        elif subsets != found:
            raise ValueError(f"{path}: {table} subsets {subsets} differ from {first}'s {found}.")
    return found


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    mean = float(np.mean(finite))
    return mean, float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


def fold_table(fold_metrics: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    """One row per metric present in every fold: ``metric``, ``fold<i>`` values, ``mean`` and sample ``sd``."""
    if not fold_metrics:
        return []
    names = [k for k in fold_metrics[0] if all(k in m for m in fold_metrics)]
    rows = []
    for name in names:
        values = [float(m[name]) for m in fold_metrics]
        mean, sd = _mean_sd(values)
        rows.append({"metric": name, **{f"fold{i}": v for i, v in enumerate(values)}, "mean": mean, "sd": sd})
    return rows


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"


def _markdown(bundle: str, rows: Sequence[Mapping[str, Any]], pooled: Mapping[str, Any], folds: Sequence[str],
              num_folds: int, subsets: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    lines = [f"# {bundle}: {num_folds}-fold cross-validation", "", "## Per fold (validation split of each fold)", "",
             "| metric | " + " | ".join(folds) + " | mean ± sd |", "|---|" + "---|" * (len(folds) + 1)]
    for row in rows:
        lines.append(f"| {row['metric']} | " + " | ".join(_fmt(row[f]) for f in folds)
                     + f" | {_fmt(row['mean'])} ± {_fmt(row['sd'])} |")
    for name, section in pooled.items():
        lines += ["", f"## Pooled out-of-fold: {name}", "", "| metric | value | 95% CI | n |", "|---|---|---|---|"]
        if name == "predictions.csv":
            for key, m in section["metrics"].items():
                lines.append(f"| {key} | {_fmt(m['value'])} | {_fmt(m['ci_low'])} - {_fmt(m['ci_high'])} "
                             f"| {section['n']} |")
        else:
            flat = section.items() if all("mean" in m for m in section.values()) else (
                (f"{subset}/{key}", m) for subset, stats in section.items() for key, m in stats.items())
            for key, m in flat:
                lines.append(f"| {key} | {_fmt(m['mean'])} | {_fmt(m['ci_low'])} - {_fmt(m['ci_high'])} | {m['n']} |")
            for subset, classes in subsets.get(name, {}).items():
                lines += ["", f"{subset}: the cases of class {', '.join(classes)}; all: every case."]
    return "\n".join(lines) + "\n"


def fold_run_dir(configs: str | Path, files: Sequence[str], overrides: Mapping[str, Any], bundle: str = "") -> Path:
    """The run folder that a training with ``files`` of the bundle's ``configs`` folder and ``overrides`` writes: its
    ``run_bundle_writer#run_dir`` (``output_dir``, or e.g. ``<output_dir>/stage2`` for a bundle trained in stages).

    Raises:
        ValueError: the bundle (named) has no ``run_bundle_writer#run_dir``.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(Path(configs) / name) for name in files])
    parser.update(dict(overrides))
    if "run_bundle_writer#run_dir" not in parser:
        raise ValueError(f"bundle {bundle or Path(configs).parent.name!r} ({', '.join(files)}) defines no run folder "
                         "(run_bundle_writer#run_dir): cross-validate cannot find the fold models.")
    return Path(parser.get_parsed_content("run_bundle_writer#run_dir")).resolve()


def run_checkpoint(run_dir: str | Path, bundle: str = "") -> Path:
    """The final model of a run folder, as the run defines it: the ``ckpt_path`` of ``<run_dir>/configs/
    inference.yaml`` (``models/model.pt`` of the run folder for the project's bundles).

    Raises:
        FileNotFoundError: the run folder has no ``configs/inference.yaml`` or the model file is missing (both
            named, with the bundle).
        ValueError: its ``inference.yaml`` has no ``ckpt_path``.
    """
    from monai.bundle import ConfigParser

    name = f"bundle {bundle!r}: " if bundle else ""
    config = Path(run_dir) / "configs" / "inference.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{name}run folder {run_dir} has no configs/inference.yaml: cannot tell where its "
                                "final model is (was it trained by the bundle's training run id?).")
    parser = ConfigParser()
    parser.read_config(str(config))
    if "ckpt_path" not in parser:
        raise ValueError(f"{name}{config} has no ckpt_path: cannot tell where the run's final model is.")
    path = Path(parser.get_parsed_content("ckpt_path")).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{name}the final model {path} of run folder {run_dir} ({config}: ckpt_path) does "
                                "not exist.")
    return path


def write_ensemble_overlay(cv_dir: str | Path, ckpt_paths: Sequence[str], inference_config: str | Path | None = None
                           ) -> str:
    """Write ``<cv_dir>/configs/ensemble.yaml``: an overlay of a fold run's ``inference.yaml`` that predicts with
    the mean of the fold models (:func:`pipelines.predictors.ensemble.fold_ensemble`) into ``<cv_dir>/predictions``.

    Args:
        cv_dir: the cross-validation folder.
        ckpt_paths: the fold models.
        inference_config: the run-folder ``inference.yaml`` the overlay goes on, for the usage line (default
            ``<cv_dir>/fold0/configs/inference.yaml``).
    """
    path = Path(cv_dir) / "configs" / "ensemble.yaml"
    base = Path(inference_config or Path(cv_dir) / "fold0" / "configs" / "inference.yaml").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay = {
        "output_dir": str(Path(cv_dir).resolve()),
        "ckpt_path": [str(p) for p in ckpt_paths],
        "network": {"_target_": "pipelines.predictors.ensemble.fold_ensemble", "network": "@network_def",
                    "ckpt_paths": "@ckpt_path", "device": "@device"},
        "predictor#ckpt_path": None,
    }
    header = ("# Inference with the mean of the fold models (written by python -m pipelines cross-validate):\n"
              f"#   python -m monai.bundle run inference --config_file \"['{base}','{path.resolve()}']\" "
              "--input_dir <folder>\n")
    path.write_text(header + yaml.safe_dump(overlay, sort_keys=False))
    return str(path)


def cross_validate(
    bundle: str,
    num_folds: int = 3,
    output_dir: str | None = None,
    overlays: Sequence[str] | str = (),
    folds: Sequence[int] | None = None,
    n_resamples: int = 1000,
    evaluate: bool = True,
    progress: str | bool = "auto",
    **overrides: Any,
) -> dict[str, Any]:
    """Train and evaluate every fold of ``bundle``, then write the cross-validation summary.

    Args:
        bundle: bundle name under ``bundles/``.
        num_folds: number of folds of the bundle's split (its ``num_folds`` key).
        output_dir: the cross-validation folder (default ``runs/<bundle>_cv``); fold ``i`` trains into ``fold<i>``.
        overlays: config files of the bundle merged after ``train.yaml`` (and after ``train.yaml`` +
            ``evaluate.yaml``), e.g. ``["cpu.yaml"]``.
        folds: the folds to run (default all); the summary covers every finished fold.
        n_resamples: bootstrap resamples of the pooled metrics' confidence intervals.
        evaluate: run the bundle's ``evaluating`` run id on each fold (false: training only, no summary).
        progress: an overall bar over the folds: ``"auto"`` (on an interactive terminal), ``"on"``, ``"off"``
            (:func:`pipelines.handlers.progress_enabled`); each fold is logged either way ("fold 2/3: ...").
        overrides: bundle overrides for every fold (``dataset_dir``, ``epochs``, ``seed``, ``network_def#...``).

    Returns:
        ``{"summary": {json, csv, md paths}, "ensemble": overlay path, "trained": [...], "skipped": [...],
        "folds": per-fold metrics, "pooled": pooled metrics}``.

    Raises:
        ValueError: ``num_folds`` < 2, a fold out of range, or an override that the command sets itself.
    """
    from ..bundles import bundle_root

    num_folds = int(num_folds)
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}.")
    clash = sorted({"fold", "num_folds", "output_dir"} & set(overrides))
    if clash:
        raise ValueError(f"{clash} are set by cross_validate for each fold; pass num_folds / output_dir instead.")
    run_folds = list(range(num_folds)) if folds is None else [int(f) for f in ([folds] if isinstance(folds, int)
                                                                                 else folds)]
    bad = [f for f in run_folds if not 0 <= f < num_folds]
    if bad:
        raise ValueError(f"folds {bad} out of range for num_folds={num_folds}.")
    overlays = [overlays] if isinstance(overlays, str) else list(overlays)
    configs = Path(bundle_root(bundle)) / "configs"
    missing = [name for name in ("train.yaml", "evaluate.yaml", *overlays) if not (configs / name).is_file()]
    if missing:
        raise FileNotFoundError(f"bundle {bundle!r} has no {missing} in {configs}.")
    out = Path(output_dir or os.path.join("runs", f"{bundle}_cv")).resolve()
    out.mkdir(parents=True, exist_ok=True)

    trained, skipped = [], []
    from ..handlers.progress import announce, overall_progress

    for index, fold in enumerate(overall_progress(run_folds, progress, desc="cross-validate", unit="fold"), start=1):
        fold_dir = out / f"fold{fold}"
        announce(logger, f"[cross-validate] fold {index}/{len(run_folds)}: {bundle} fold {fold} of {num_folds}")
        if (fold_dir / FOLD_RESULT).is_file():
            print(f"[cross-validate] fold {fold}: finished ({fold_dir / FOLD_RESULT}), skipped")
            skipped.append(fold)
            continue
        fold_overrides = dict(overrides, num_folds=num_folds, fold=fold, output_dir=str(fold_dir))
        print(f"[cross-validate] fold {fold} of {num_folds}: training into {fold_dir}")
        _workflow(configs, ["train.yaml", *overlays], "training", fold_overrides)
        trained.append(fold)
        if not evaluate:
            continue
        print(f"[cross-validate] fold {fold}: evaluating on its validation split")
        _workflow(configs, ["train.yaml", "evaluate.yaml", *overlays], "evaluating", fold_overrides)
        with open(fold_dir / "eval" / "summary.json") as f:
            metrics = flatten_summary(json.load(f))
        run_dir = fold_run_dir(configs, ["train.yaml", *overlays], fold_overrides, bundle)
        ckpt = run_checkpoint(run_dir, bundle)
        with open(fold_dir / FOLD_RESULT, "w") as f:
            json.dump({"fold": fold, "num_folds": num_folds, "metrics": metrics,
                       "run_dir": os.path.relpath(run_dir, out), "ckpt_path": os.path.relpath(ckpt, out)}, f, indent=2)
    result: dict[str, Any] = {"trained": trained, "skipped": skipped}
    if not evaluate:
        return result
    return {**result, **summarise_cross_validation(out, num_folds, bundle, n_resamples=n_resamples)}


def summarise_cross_validation(cv_dir: str | Path, num_folds: int, bundle: str = "",
                               n_resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Write ``cv_summary.{json,csv,md}`` and ``configs/ensemble.yaml`` of the finished folds of ``cv_dir``."""
    out = Path(cv_dir)
    done = [i for i in range(num_folds) if (out / f"fold{i}" / FOLD_RESULT).is_file()]
    fold_metrics, run_dirs, ckpts = [], [], []
    for i in done:
        with open(out / f"fold{i}" / FOLD_RESULT) as f:
            result = json.load(f)
        fold_metrics.append(result["metrics"])
        # the fold's run folder and final model as its training recorded them (a run folder <fold>/ by default)
        run_dir = out / result.get("run_dir", f"fold{i}")
        run_dirs.append(run_dir)
        ckpts.append(str(out / result["ckpt_path"]) if "ckpt_path" in result else str(run_checkpoint(run_dir, bundle)))
    rows = fold_table(fold_metrics)
    rows = [{"metric": r["metric"], **{f"fold{done[j]}": r[f"fold{j}"] for j in range(len(done))},
             "mean": r["mean"], "sd": r["sd"]} for r in rows]
    pooled: dict[str, Any] = {}
    evals = [out / f"fold{i}" / "eval" for i in done]
    if evals and all((e / "predictions.csv").is_file() for e in evals):
        pooled["predictions.csv"] = pool_predictions([e / "predictions.csv" for e in evals], n_resamples, seed)
    subsets: dict[str, dict[str, list[str]]] = {}
    for name in PER_CASE_TABLES:
        if evals and all((e / name).is_file() for e in evals):
            table_subset = table_subsets(evals, name)
            if table_subset:
                subsets[name] = table_subset
            pooled[name] = pool_per_case([e / name for e in evals], n_resamples, seed, subsets=table_subset)

    from ..evaluation.reports import json_safe

    summary = {"bundle": bundle, "num_folds": num_folds, "folds": done, "per_fold": rows, "pooled": pooled,
               "pooled_subsets": subsets}
    paths = {ext: str(out / f"cv_summary.{ext}") for ext in ("json", "csv", "md")}
    with open(paths["json"], "w") as f:
        json.dump(json_safe(summary), f, indent=2)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["metric", *(f"fold{i}" for i in done), "mean", "sd"])
        writer.writeheader()
        writer.writerows(rows)
    table = _markdown(bundle, rows, pooled, [f"fold{i}" for i in done], num_folds, subsets)
    Path(paths["md"]).write_text(table)
    print(table)
    ensemble = (write_ensemble_overlay(out, ckpts, run_dirs[0] / "configs" / "inference.yaml") if ckpts else None)
    return {"summary": paths, "ensemble": ensemble, "folds": dict(zip(done, fold_metrics)), "pooled": pooled}
