"""Runs the real cxr_attention_classification configs on tiny data: training (train.yaml), evaluation (train.yaml +
evaluate.yaml), inference (inference.yaml) on the shortcut demo (ensure_demo_dataset("chestxray14_shortcut")), a
three-class run on a prepared folder built here, the error for a missing lung_boxes.csv, --lung_box_file null and
resuming."""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow
from PIL import Image

from pipelines.data import ensure_demo_dataset
from pipelines.data.demo.chestxray14 import chest_radiograph
from transforms.chestxray import CXR_TASKS, class_folder, lung_box_from_mask

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "cxr_attention_classification" / "configs"
# the real configs shrunk to a CPU budget; transforms, iterations, metrics and handlers are the bundle's own
SMALL = {"image_size": 64, "backbone": "resnet10", "network_def#widen_factor": 0.125, "num_workers": 0, "batch_size": 8,
         "seed": 0, "augment": False}
TRAIN = dict(SMALL, epochs=2, learning_rate=1e-3, loss_lambda=0.5, cache_rate=1.0, tb_num_images=2)
EVAL = dict(SMALL, n_resamples=50)


def _workflow(configs, workflow_type: str, **override) -> ConfigWorkflow:
    configs = (configs,) if isinstance(configs, str) else configs
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / c) for c in configs], meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"), workflow_type=workflow_type, **override,
    )
    wf.initialize()
    return wf


def _count(task_dir: str, split: str, folder: str | None = None) -> int:
    pattern = os.path.join(task_dir, split, folder or "*", "*.png")
    return len(glob.glob(pattern))


def _scalars(log_dir: str) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[float]] = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        events = EventAccumulator(path)
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, []).extend(e.value for e in events.Scalars(tag))
        for tag in events.Tags()["images"]:
            found.setdefault(tag, []).append(len(events.Images(tag)))
    return found


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cxr_bundle")
    data = ensure_demo_dataset("chestxray14_shortcut", root=str(base / "demo"), task="ne", num_patients=24, size=64)
    out = str(base / "out")
    wf = _workflow("train.yaml", "train", dataset_dir=data, output_dir=out, **TRAIN)
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    trainer = wf.parser.get_parsed_content("train#trainer")
    result = {
        "metrics": dict(evaluator.state.metrics),
        "scheduler_steps": wf.parser.get_parsed_content("lr_scheduler").last_epoch,
        "early_stop_trainer": wf.parser.get_parsed_content("validate#early_stop")._handler.trainer is trainer,
    }
    wf.finalize()
    run = Path(out)
    wf = _workflow((str(run / "configs" / "train.yaml"), str(run / "configs" / "evaluate.yaml")), "eval",
                   n_resamples=50)
    wf.run()
    wf.finalize()
    pred_dir = str(base / "predictions")
    # the run id of the command line (`run inference`)
    wf = _workflow(str(run / "configs" / "inference.yaml"), "infer", run_id="inference", pred_dir=pred_dir)
    wf.run()
    input_dir = wf.parser.get_parsed_content("input_dir")
    wf.finalize()
    return {"data": data, "run": run, "train": result, "pred_dir": pred_dir, "input_dir": input_dir}


def test_training_writes_the_run_folder_and_logs(demo_run):
    run = demo_run["run"]
    assert (run / "models" / "model.pt").is_file() and (run / "models" / "checkpoint_epoch=2.pt").is_file()
    assert {p.name for p in (run / "configs").iterdir()} >= {
        "train.yaml", "evaluate.yaml", "inference.yaml", "metadata.json", "logging.conf"}
    metrics = demo_run["train"]["metrics"]
    assert {"val_accuracy", "val_loss", "val_attention_ratio", "val_pointing", "auc", "youden_threshold"} <= set(metrics)
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["val_loss"] > 0.0
    assert 0.0 <= metrics["val_attention_ratio"] <= 1.0 and 0.0 <= metrics["val_pointing"] <= 1.0
    assert demo_run["train"]["scheduler_steps"] == 2  # reduce-on-plateau stepped once per validation
    assert demo_run["train"]["early_stop_trainer"]
    logged = _scalars(str(run / "logs"))
    assert {"loss", "ce", "attention", "lambda", "lr/group_0", "val_loss", "val_accuracy", "val_cam"} <= set(logged)
    assert set(logged["lambda"]) == {0.5}
    assert logged["lr/group_0"] == [pytest.approx(1e-3)] * 2


def test_evaluation_reports_and_figures(demo_run):
    data, eval_dir = demo_run["data"], demo_run["run"] / "eval"
    n_test, n_disease = _count(data, "test"), _count(data, "test", "Effusion")
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert summary["n"] == n_test and summary["class_names"] == ["No Finding", "Effusion"]
    for key in ("accuracy", "auc", "sensitivity_youden", "specificity_youden", "youden_threshold"):
        entry = summary["metrics"][key]
        assert 0.0 <= entry["value"] <= 1.0 and entry["ci_low"] <= entry["value"] <= entry["ci_high"], key
    localisation = summary["localisation"]
    assert localisation["n"] == n_disease and localisation["cam_threshold"] == 0.5
    assert 0.0 <= localisation["attention_ratio"] <= 1.0 and 0.0 <= localisation["pointing_hit_rate"] <= 1.0
    with open(eval_dir / "localisation.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_disease
    assert np.mean([float(r["attention_ratio"]) for r in rows]) == pytest.approx(localisation["attention_ratio"])
    with open(eval_dir / "predictions.csv") as f:
        assert len(list(csv.DictReader(f))) == n_test
    assert len(list((eval_dir / "figures").glob("*.png"))) == n_test
    assert "Localisation" in (eval_dir / "summary.md").read_text()


def test_inference_writes_probabilities_and_cam_figures(demo_run):
    inputs = sorted(p for p in os.listdir(demo_run["input_dir"]) if p.endswith(".png"))
    assert demo_run["input_dir"].endswith(os.path.join("test", "Effusion")) and inputs
    with open(os.path.join(demo_run["pred_dir"], "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == inputs and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        probs = [float(row["prob_No Finding"]), float(row["prob_Effusion"])]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == ("Effusion" if probs[1] > probs[0] else "No Finding")
    figures = sorted(os.listdir(os.path.join(demo_run["pred_dir"], "figures")))
    assert figures == inputs


def _prepared_task(root: Path, task: str, per_class: int = 3, size: int = 64) -> str:
    """A prepared task folder (the layout of `python -m pipelines prepare`) with lung_boxes.csv from the true lungs."""
    task_dir = root / task
    rows = []
    for s, split in enumerate(("train", "val", "test")):
        for k, finding in enumerate(CXR_TASKS[task]):
            for i in range(per_class):
                rng = np.random.default_rng([s, k, i])
                image, lungs = chest_radiograph(rng, size, [finding])
                name = f"{100 * s + 10 * k + i:08d}_000.png"
                rel = f"{split}/{class_folder(finding)}/{name}"
                (task_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(task_dir / rel)
                r0, c0, r1, c1 = lung_box_from_mask(lungs).tolist()
                rows.append([rel, r0, c0, r1, c1, size, size, 1])
    with open(task_dir / "lung_boxes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "row_min", "col_min", "row_max", "col_max", "height", "width", "lung_found"])
        writer.writerows(rows)
    return str(task_dir)


def test_three_class_run_on_a_prepared_folder(tmp_path):
    task_dir = _prepared_task(tmp_path / "prepared", "nep")
    out = str(tmp_path / "out")
    wf = _workflow("train.yaml", "train", dataset_dir=task_dir, task="nep", output_dir=out, **dict(TRAIN, epochs=1))
    wf.run()
    assert wf.parser.get_parsed_content("network").fc.out_features == 3
    wf.finalize()
    wf = _workflow(("train.yaml", "evaluate.yaml"), "eval", dataset_dir=task_dir, task="nep", output_dir=out,
                   figures=False, **EVAL)
    wf.run()
    wf.finalize()
    summary = json.loads((Path(out) / "eval" / "summary.json").read_text())
    assert summary["n"] == 9 and summary["class_names"] == list(CXR_TASKS["nep"])
    assert {"auc_No Finding", "auc_Effusion", "auc_Pneumothorax"} <= set(summary["metrics"])
    assert not any("youden" in key for key in summary["metrics"])  # binary tasks only
    assert summary["localisation"]["n"] == 6  # Effusion and Pneumothorax test images have a region
    assert not (Path(out) / "eval" / "figures").exists()  # --figures false


def test_missing_lung_boxes_whole_image_boxes_and_resume(tmp_path):
    task_dir = _prepared_task(tmp_path / "prepared", "ne", per_class=1, size=32)
    os.remove(os.path.join(task_dir, "lung_boxes.csv"))
    out = tmp_path / "out"
    wf = _workflow("train.yaml", "train", dataset_dir=task_dir, output_dir=str(out), **TRAIN)
    with pytest.raises(Exception) as raised:
        wf.run()
    messages = []
    error: BaseException | None = raised.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("lung_boxes.csv does not exist" in m and "python -m pipelines lung-boxes" in m for m in messages)
    assert not list(out.glob("models/*.pt"))
    # --lung_box_file null trains with the whole image as lung box
    wf = _workflow("train.yaml", "train", dataset_dir=task_dir, output_dir=str(out), lung_box_file=None,
                   **dict(TRAIN, epochs=1))
    wf.run()
    assert (out / "models" / "model.pt").is_file()
    wf.finalize()
    # resuming continues the run (network, optimizer, scheduler, trainer); other run settings are refused
    wf = _workflow("train.yaml", "train", dataset_dir=task_dir, output_dir=str(out), lung_box_file=None,
                   **dict(TRAIN, epochs=2))
    wf.run()
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == 2
    assert wf.parser.get_parsed_content("lr_scheduler").last_epoch == 2
    wf.finalize()
    assert (out / "models" / "checkpoint_epoch=2.pt").is_file()
    wf = _workflow("train.yaml", "train", dataset_dir=task_dir, output_dir=str(out), lung_box_file=None,
                   **dict(TRAIN, epochs=3, loss_lambda=1.0))
    with pytest.raises(Exception) as raised:
        wf.run()
    assert "loss_lambda" in str(raised.value) + str(raised.value.__cause__)
