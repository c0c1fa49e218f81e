"""Runs the real BraTS bundle configs end to end on tiny demo data: train, resume, evaluate (the overlay
``[train.yaml, evaluate.yaml]``), infer (dataset root and plain folder), verify."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from ignite.engine import Events
from monai.bundle import ConfigWorkflow, verify_net_in_out

from pipelines.bundles.metadata import verify_bundle_metadata
from pipelines.data import DatasetError, make_brats_demo
from pipelines.metrics import compute_segmentation_metrics
from transforms import regions_from_labels

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "brats_pam_segmentation"
CONFIGS = BUNDLE / "configs"
ROI = [48, 48, 32]
EPOCHS = 48
# Shrink the real configs to a CPU budget; everything else (transforms, loss, handlers) is the bundle's own.
SMALL = {
    "roi_size": ROI,
    "network_def#features": [8, 16, 32, 64],
    "num_workers": 0,
    "sw_batch_size": 2,
    "seed": 0,
}
TRAIN = dict(SMALL, epochs=EPOCHS, val_interval=EPOCHS // 2, learning_rate=0.003, lr_step_epochs=100, cache_rate=1.0,
             batch_size=2)


EVALUATE = ["train.yaml", "evaluate.yaml"]  # the overlay on its base


def _workflow(config, workflow_type: str, **override) -> ConfigWorkflow:
    files = [config] if isinstance(config, str) else config
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / c) for c in files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
    wf.initialize()
    return wf


def _digest(folder: str) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[path] = hashlib.md5(Path(path).read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("brats_bundle")
    data = make_brats_demo(str(base / "data"), num_cases=8, shape=(48, 48, 32), seed=3)
    before = _digest(data)
    out = str(base / "out")
    wf = _workflow("train.yaml", "train", dataset_dir=data, output_dir=out, **TRAIN)
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    metrics = dict(evaluator.state.metrics)
    best = evaluator.state.best_metric
    wf.finalize()
    return {"data": data, "out": out, "metrics": metrics, "best": best, "before": before}


def test_training_learns_and_writes_checkpoints(trained):
    models = Path(trained["out"]) / "models"
    assert (models / "model.pt").is_file()
    assert (models / f"checkpoint_epoch={EPOCHS}.pt").is_file()
    assert trained["best"] > 0.6, trained["metrics"]
    assert trained["metrics"]["val_mean_dice_WT"] > 0.8, trained["metrics"]
    assert {"val_mean_dice_TC", "val_mean_dice_WT", "val_mean_dice_ET"} <= set(trained["metrics"])
    assert any(p.name.startswith("events.out.tfevents") for p in (Path(trained["out"]) / "logs").iterdir())


def test_inputs_are_never_written(trained):
    assert _digest(trained["data"]) == trained["before"]


def test_resume_continues_from_last_checkpoint(trained, tmp_path):
    wf = _workflow("train.yaml", "train", dataset_dir=trained["data"], output_dir=trained["out"],
                   **dict(TRAIN, epochs=EPOCHS + 1, val_interval=1))
    trainer = wf.parser.get_parsed_content("train#trainer")
    started = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: started.append(e.state.epoch))
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    wf.finalize()
    assert started == [EPOCHS + 1]  # only the one missing epoch ran
    assert (Path(trained["out"]) / "models" / f"checkpoint_epoch={EPOCHS + 1}.pt").is_file()
    # the best score survived the restart: it can only have stayed or improved
    assert evaluator.state.best_metric >= trained["best"] - 1e-6


@pytest.fixture(scope="module")
def evaluated(trained):
    wf = _workflow(EVALUATE, "eval", dataset_dir=trained["data"], output_dir=trained["out"], **SMALL)
    wf.run()
    state_metrics = dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)
    wf.finalize()
    return state_metrics


@pytest.fixture(scope="module")
def inferred(trained, tmp_path_factory):
    pred_dir = str(tmp_path_factory.mktemp("brats_pred"))
    wf = _workflow("inference.yaml", "infer", dataset_dir=trained["data"], output_dir=trained["out"],
                   pred_dir=pred_dir, **{k: v for k, v in SMALL.items() if k != "seed"})
    wf.run()
    wf.finalize()
    return pred_dir


def test_evaluation_writes_metrics_csv_and_summary(trained, evaluated):
    eval_dir = Path(trained["out"]) / "eval"
    with open(eval_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = [f"{m}_{r}" for r in ("TC", "WT", "ET") for m in ("dice", "hd95", "nsd")]
    assert rows and list(rows[0]) == ["case_id", *columns]
    assert all(r["case_id"].startswith("Brats18_DEMO_") for r in rows)
    summary = json.loads((eval_dir / "summary.json").read_text())
    for column in columns:
        stats = summary[column]
        values = [float(r[column]) for r in rows]
        assert stats["n"] == len(rows)
        assert stats["mean"] == pytest.approx(np.mean(values), abs=1e-9)
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
    for region in ("TC", "WT", "ET"):  # the key metric handler reports the same means
        assert evaluated[f"dice_{region}"] == pytest.approx(summary[f"dice_{region}"]["mean"], abs=1e-6)
    assert "| TC |" in (eval_dir / "summary.md").read_text()
    assert np.mean([summary[f"dice_{r}"]["mean"] for r in ("TC", "WT", "ET")]) > 0.6


def test_metrics_csv_equals_metric_functions_on_saved_predictions(trained, evaluated, inferred):
    with open(Path(trained["out"]) / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        case = row["case_id"]
        pred = nib.load(os.path.join(inferred, f"{case}.nii.gz"))
        truth = nib.load(os.path.join(trained["data"], case, f"{case}_seg.nii.gz"))
        spacing = [float(z) for z in pred.header.get_zooms()[:3]]
        values = compute_segmentation_metrics(
            regions_from_labels(np.asarray(pred.dataobj)), regions_from_labels(np.asarray(truth.dataobj)),
            spacing=spacing, class_names=("TC", "WT", "ET"), tolerance_mm=1.0,
        )
        for key, value in values.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-4), (case, key)


def test_inference_writes_labels_in_the_input_grid(trained, inferred):
    pred_dir = inferred
    cases = sorted(p.name for p in Path(trained["data"]).iterdir() if p.is_dir())
    assert sorted(os.listdir(pred_dir)) == [f"{c}.nii.gz" for c in cases]
    orientations = set()
    for case in cases:
        ref = nib.load(os.path.join(trained["data"], case, f"{case}_flair.nii.gz"))
        pred = nib.load(os.path.join(pred_dir, f"{case}.nii.gz"))
        assert pred.shape == ref.shape
        np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-5)
        orientations.add(nib.aff2axcodes(ref.affine))
        labels = np.asarray(pred.dataobj)
        assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 4}
        truth = np.asarray(nib.load(os.path.join(trained["data"], case, f"{case}_seg.nii.gz")).dataobj)
        wt_p, wt_t = labels > 0, truth > 0
        dice = 2 * (wt_p & wt_t).sum() / (wt_p.sum() + wt_t.sum())
        assert dice > 0.7, (case, dice)  # a flipped or shifted grid would fail this
    assert {("R", "A", "S"), ("L", "P", "S")} <= orientations


def test_bad_dataset_fails_before_training(trained, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained["data"], broken)
    case = sorted(p for p in broken.iterdir() if p.is_dir())[0]
    os.remove(case / f"{case.name}_t1ce.nii.gz")
    out = tmp_path / "out"
    wf = ConfigWorkflow(config_file=str(CONFIGS / "train.yaml"), meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=False, workflow_type="train", dataset_dir=str(broken), output_dir=str(out),
                        **TRAIN)
    wf.initialize()
    with pytest.raises(RuntimeError) as info:
        wf.run()
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__
    assert any(isinstance(e, DatasetError) and "t1ce" in str(e) and case.name in str(e) for e in chain)
    assert not (out / "models").exists()


def test_network_matches_metadata_and_metadata_matches_schema():
    verify_bundle_metadata(str(CONFIGS / "metadata.json"))
    # the real 224 x 224 x 144 patch is too slow for CI on 2 cores; the network is built for the patch given here
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "train.yaml"),
        n_batch=1,
        **{
            "roi_size": ROI,
            "_meta_#network_data_format#inputs#image#spatial_shape": ROI,
            "_meta_#network_data_format#outputs#pred#spatial_shape": ROI,
        },
    )


def test_training_selects_the_dice_that_evaluation_reports(tmp_path):
    """Two epochs, validated after each: the best validation Dice of training (PerChannelMeanDice on the regions ->
    0/1/2/4 -> regions map) is the mean Dice that ``evaluating`` reports for that checkpoint and fold."""
    data = make_brats_demo(str(tmp_path / "data"), num_cases=5, shape=(32, 32, 24), seed=1)
    small = dict(SMALL, roi_size=[32, 32, 24], dataset_dir=data, output_dir=str(tmp_path / "out"))
    wf = _workflow("train.yaml", "train", **dict(small, epochs=2, val_interval=1, learning_rate=0.003,
                                                   cache_rate=1.0, batch_size=2))
    wf.run()
    validator = wf.parser.get_parsed_content("validate#evaluator")
    best, best_epoch = validator.state.best_metric, validator.state.best_metric_epoch
    wf.finalize()
    assert best_epoch in (1, 2)
    wf = _workflow(EVALUATE, "eval", **small)
    wf.run()
    reported = wf.parser.get_parsed_content("validate#evaluator").state.metrics["val_mean_dice"]
    wf.finalize()
    assert reported == pytest.approx(best, abs=1e-6)

    # inference takes a plain folder of volumes (cases side by side) as well as the dataset root
    flat = tmp_path / "flat"
    flat.mkdir()
    cases = sorted(p.name for p in Path(data).iterdir() if p.is_dir())[:2]
    for case in cases:
        for modality in ("t1", "t1ce", "t2", "flair"):
            name = f"{case}_{modality}.nii.gz"
            (flat / name).write_bytes((Path(data) / case / name).read_bytes())
    outputs = {}
    for source in (data, str(flat)):
        pred_dir = tmp_path / f"pred_{Path(source).name}"
        wf = _workflow("inference.yaml", "infer", input_dir=source, output_dir=small["output_dir"],
                       pred_dir=str(pred_dir), **{k: small[k] for k in ("roi_size", "network_def#features",
                                                                          "num_workers", "sw_batch_size")})
        wf.run()
        wf.finalize()
        outputs[source] = {p.name: np.asarray(nib.load(p).dataobj) for p in pred_dir.iterdir()}
    assert sorted(outputs[str(flat)]) == [f"{c}.nii.gz" for c in cases]
    for name, labels in outputs[str(flat)].items():  # the same volumes give the same label maps
        np.testing.assert_array_equal(labels, outputs[data][name])


@pytest.mark.parametrize("attention", ["none", "se", "pam"])
def test_attention_is_switchable_by_override(attention):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    parser.update({"roi_size": ROI, "network_def#attention": attention, "device": "$torch.device('cpu')"})
    net = parser.get_parsed_content("network_def")
    names = {type(m).__name__ for m in net.modules()}
    assert ("ProgressiveAttention" in names) == (attention == "pam")
    assert ("ChannelSELayer" in names) == (attention == "se")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch of the real configs on 4 tiny cases (2 folds), the run the resume tests below start from."""
    base = tmp_path_factory.mktemp("brats_resume")
    data = make_brats_demo(str(base / "data"), num_cases=4, shape=(24, 24, 16), seed=1)
    settings = dict(roi_size=[24, 24, 16], num_workers=0, num_folds=2, sw_batch_size=1, batch_size=2, cache_rate=0.0,
                    dataset_dir=data, output_dir=str(base / "out"), **{"network_def#features": [4, 8, 16, 32]})
    wf = ConfigWorkflow(config_file=str(CONFIGS / "train.yaml"), meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=False, workflow_type="train", **dict(settings, epochs=1))
    wf.initialize()
    wf.run()
    best = wf.parser.get_parsed_content("train#trainer").state.best_metric
    wf.finalize()
    return settings, best


def _tiny(settings: dict, **override):
    wf = ConfigWorkflow(config_file=str(CONFIGS / "train.yaml"), meta_file=str(CONFIGS / "metadata.json"),
                        logging_file=False, workflow_type="train", **dict(settings, **override))
    wf.initialize()
    started = []
    wf.parser.get_parsed_content("train#trainer").add_event_handler(
        Events.EPOCH_STARTED, lambda e: started.append((e.state.epoch, e.state.best_metric)))
    return wf, started


@pytest.mark.parametrize("change, expected", [
    ({"fold": 1}, "fold: 0 -> 1"),
    ({"network_def#attention": "se"}, "network_def#attention: 'pam' -> 'se'"),
    ({"roi_size": [16, 16, 16]}, "roi_size: [24, 24, 16] -> [16, 16, 16]"),
])
def test_resume_with_other_fold_network_or_patch_is_refused(tiny_run, change, expected):
    from pipelines.handlers.checkpoints import CheckpointMismatchError

    settings, _ = tiny_run
    models = Path(settings["output_dir"]) / "models"
    before = _digest(str(models))
    wf, started = _tiny(settings, epochs=2, **change)
    with pytest.raises(RuntimeError) as info:
        wf.run()
    wf.finalize()
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__
    refused = [e for e in chain if isinstance(e, CheckpointMismatchError)]
    assert refused and expected in str(refused[0]) and str(models / "checkpoint_epoch=1.pt") in str(refused[0])
    assert started == [] and _digest(str(models)) == before  # refused before any epoch; nothing written


def test_finished_run_exits_saying_so_and_resume_restores_best_train_dice(tiny_run, caplog):
    settings, best = tiny_run
    wf, started = _tiny(settings, epochs=1)
    with caplog.at_level(logging.INFO, logger="pipelines.handlers.checkpoints"):
        wf.run()
    wf.finalize()
    assert started == []
    assert f"run in {settings['output_dir']} already finished epoch 1 of 1" in caplog.text
    wf, started = _tiny(settings, epochs=2)
    with caplog.at_level(logging.INFO, logger="pipelines.handlers.checkpoints"):
        wf.run()
    wf.finalize()
    assert f"resuming from epoch 1 of 2 (checkpoint {settings['output_dir']}/models/checkpoint_epoch=1.pt)" in caplog.text
    assert best > 0 and started == [(2, best)]  # the best train Dice of epoch 1 came back with the checkpoint
