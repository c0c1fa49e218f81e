"""``python -m pipelines``: the project's command line (thin; the work is done by bundles and library functions)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEMO_OVERRIDES", "run_bundle", "demo", "main"]

#: Overrides that shrink the BraTS bundle to the demo data and a CPU budget (the configs are otherwise the real ones).
DEMO_OVERRIDES: dict = {
    "roi_size": [48, 48, 32],
    "network_def#features": [8, 16, 32, 64],
    "epochs": 60,
    "val_interval": 5,
    "learning_rate": 0.003,
    "lr_step_epochs": 45,
    "cache_rate": 1.0,
    "num_workers": 0,
    "batch_size": 2,
    "sw_batch_size": 2,
}


def run_bundle(bundle: str, run_id: str, config: str | Sequence[str], **override) -> None:
    """Run one of a bundle's workflows (``training``, ``evaluating``, ``inference``) with overrides.

    Args:
        bundle: bundle name under ``bundles/``.
        run_id: the config id to run.
        config: config file name in the bundle's ``configs/`` folder, or several merged in order (an overlay after
            its base, e.g. ``("train.yaml", "evaluate.yaml")``).
        override: ``key#sub`` style overrides, as on the ``python -m monai.bundle run`` command line.
    """
    from monai.bundle import run

    from .bundles import bundle_root

    configs = Path(bundle_root(bundle)) / "configs"
    files = [config] if isinstance(config, str) else list(config)
    run(
        run_id=run_id,
        config_file=[str(configs / name) for name in files],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        **override,
    )


def _read_summary(eval_dir: Path) -> dict[str, float]:
    """Mean of every metric column of the evaluation's ``summary.json`` (see :mod:`pipelines.evaluation.reports`)."""
    path = eval_dir / "summary.json"
    if not path.is_file():
        return {}
    with open(path) as f:
        summary = json.load(f)
    return {name: float(stats["mean"]) for name, stats in summary.items() if isinstance(stats, dict) and "mean" in stats}


def demo(output_dir: str = "runs/demo", data_dir: str | None = None, epochs: int | None = None, seed: int = 0) -> dict:
    """Generate the BraTS demo data (if missing), then train, evaluate and run inference with the BraTS PAM bundle.

    Args:
        output_dir: where checkpoints, TensorBoard logs, metrics and predictions go.
        data_dir: demo data folder (default: the demo cache, see ``pipelines.data.demo_root``).
        epochs: training epochs (default from :data:`DEMO_OVERRIDES`).
        seed: seed of the data generator and of training.

    Returns:
        a dict with the mean of each validation metric (Dice, HD95 in mm, NSD per region) and the output paths.
    """
    from .data import ensure_demo_dataset

    start = time.time()
    output = Path(output_dir).resolve()
    dataset_dir = ensure_demo_dataset("brats", root=data_dir, seed=seed)
    print(f"[demo] BraTS-layout demo data: {dataset_dir}")
    overrides = dict(DEMO_OVERRIDES, dataset_dir=dataset_dir, output_dir=str(output), seed=seed)
    if epochs is not None:
        overrides["epochs"] = int(epochs)
    print(f"[demo] training ({overrides['epochs']} epochs) ...")
    run_bundle("brats_pam_segmentation", "training", "train.yaml", show_progress=True, **overrides)
    common = {k: overrides[k] for k in ("dataset_dir", "output_dir", "roi_size", "network_def#features", "num_workers",
                                        "sw_batch_size", "seed")}
    print("[demo] evaluating the best checkpoint on the validation fold ...")
    run_bundle("brats_pam_segmentation", "evaluating", ("train.yaml", "evaluate.yaml"), **common)
    print("[demo] inference (NIfTI label maps 0/1/2/4 in each input's grid) ...")
    common.pop("seed")
    run_bundle("brats_pam_segmentation", "inference", "inference.yaml", **common)

    metrics = _read_summary(output / "eval")
    result = {
        "metrics_mean": metrics,
        "checkpoints": str(output / "models"),
        "tensorboard": str(output / "logs"),
        "metrics": str(output / "eval"),
        "predictions": str(output / "predictions"),
        "seconds": round(time.time() - start, 1),
    }
    dice = {k: v for k, v in metrics.items() if k.startswith("dice_")}
    print("\n[demo] validation fold, mean over cases:")
    for name, value in metrics.items():
        unit = " mm" if name.startswith("hd95") else ""
        print(f"  {name:>10s}: {value:.4f}{unit}")
    if dice:
        print(f"  mean Dice over regions: {sum(dice.values()) / len(dice):.4f}")
    print(f"[demo] checkpoints : {result['checkpoints']}  (best: model.pt, last: checkpoint_epoch=N.pt)")
    print(f"[demo] TensorBoard : tensorboard --logdir {result['tensorboard']}")
    print(f"[demo] metrics     : {result['metrics']}  (metrics.csv per case, summary.json, summary.md)")
    print(f"[demo] predictions : {result['predictions']}")
    print(f"[demo] done in {result['seconds']} s")
    with open(output / "demo_summary.json", "w") as f:
        json.dump(result, f, indent=2)
    return result


def _fire_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--help`` / ``-h`` moved behind fire's ``--`` separator, so that fire shows the help of the command
    instead of passing ``help=True`` to it (the commands take ``**kwargs``-style overrides), and the values ``true`` /
    ``false`` of ``--key true`` / ``--key=false`` (any case) written ``True`` / ``False``: fire reads only those as
    booleans and passes lowercase ones on as text, which ``if overwrite:`` would take as true."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if "--" in argv[:i]:
            break
        key, sep, value = arg.partition("=")
        if sep and key.startswith("--") and value.lower() in ("true", "false"):
            argv[i] = f"{key}={value.capitalize()}"
        elif arg.lower() in ("true", "false") and i > 0 and argv[i - 1].startswith("--") and "=" not in argv[i - 1]:
            argv[i] = arg.capitalize()
    if "--" not in argv and any(a in ("--help", "-h") for a in argv):
        argv = [a for a in argv if a not in ("--help", "-h")] + ["--", "--help"]
    return argv


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m pipelines`` (commands: ``demo``, ``sweep``, ``prepare chestxray14``, ``lung-boxes``,
    ``cross-validate``;
    ``--help`` after any of them).

    Args:
        argv: the command line after ``python -m pipelines`` (default: ``sys.argv[1:]``).
    """
    import functools
    import sys

    import fire

    from .bundles.guards import install_excepthook
    from .data.prepare.chestxray14 import COUNTS_MD, prepare_chestxray14
    from .experiments import run_sweep
    from .predictors.lung_boxes import compute_lung_boxes

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    install_excepthook()

    @functools.wraps(demo)
    def _demo(*args, **kwargs) -> None:  # fire would print the returned dict; the demo prints its own summary
        demo(*args, **kwargs)

    @functools.wraps(run_sweep)
    def _sweep(path: str, profile: str | None = None, progress="auto", **changes) -> None:
        # every parameter of run_sweep is named here: fire calls with the wrapped signature's positional order
        import yaml

        # fire passes what it cannot parse as a Python literal as a string: read those as YAML flow values
        changes = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in changes.items()}
        result = run_sweep(path, profile, progress=progress, **changes)
        print(f"[sweep] ran {result['ran']} cells, skipped {result['skipped']} finished ones")
        for key in ("results", "summary", "table", "plot"):
            print(f"[sweep] {key:8s}: {result[key]}")

    @functools.wraps(prepare_chestxray14)
    def _prepare_chestxray14(*args, **kwargs) -> None:  # fire would print the returned path; print the counts too
        task_dir = prepare_chestxray14(*args, **kwargs)
        with open(os.path.join(task_dir, COUNTS_MD)) as f:
            print(f.read())
        print(f"[prepare] {task_dir}  (manifest.csv, counts.csv, counts.md)")

    commands = {"demo": _demo, "sweep": _sweep, "prepare": {"chestxray14": _prepare_chestxray14}}

    @functools.wraps(compute_lung_boxes)
    def _lung_boxes(*args, **kwargs) -> None:  # print the CSV path, not fire's echo
        print(f"[lung-boxes] {compute_lung_boxes(*args, **kwargs)}")

    commands["lung-boxes"] = _lung_boxes

    from .experiments import cross_validate

    @functools.wraps(cross_validate)
    def _cross_validate(bundle: str, num_folds: int = 3, output_dir: str | None = None, overlays=(), folds=None,
                        n_resamples: int = 1000, evaluate: bool = True, progress="auto", **kwargs) -> None:
        import yaml

        # fire passes what it cannot parse as a Python literal as a string: read those as YAML flow values
        kwargs = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in kwargs.items()}
        overlays = yaml.safe_load(overlays) if isinstance(overlays, str) and overlays.startswith("[") else overlays
        result = cross_validate(bundle, num_folds=num_folds, output_dir=output_dir, overlays=overlays, folds=folds,
                                n_resamples=n_resamples, evaluate=evaluate, progress=progress, **kwargs)
        print(f"[cross-validate] trained folds {result['trained']}, skipped finished folds {result['skipped']}")
        for key, path in (result.get("summary") or {}).items():
            print(f"[cross-validate] summary {key:4s}: {path}")
        if result.get("ensemble"):
            print(f"[cross-validate] fold-ensemble inference overlay: {result['ensemble']}")

    commands["cross-validate"] = _cross_validate
    fire.Fire(commands, command=_fire_argv(sys.argv[1:] if argv is None else argv), name="python -m pipelines")
