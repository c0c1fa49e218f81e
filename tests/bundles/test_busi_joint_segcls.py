"""Runs the real joint segmentation + classification bundle configs (train.yaml + cpu.yaml, evaluate.yaml,
inference.yaml) on tiny BUSI-like demo data with all three classes: training, evaluation report, inference (one model
and the fold-ensemble overlay), and the surface metrics of the saved masks."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from pipelines.bundles.metadata import verify_bundle_metadata
from pipelines.data import busi_datalist, kfold_split, make_busi_demo
from pipelines.losses import class_weights
from pipelines.metrics import dice, hd95, nsd

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "busi_joint_segcls"
CONFIGS = BUNDLE / "configs"
# the demo images are generated at the network size, so the evaluation grid is the images' own grid and the
# inference masks (mapped back to the image size) are the evaluated masks
SIZE = 64
NUM_PER_CLASS = 6  # 18 images, 3 stratified folds: 12 training and 6 validation images (2 per class)
NUM_VAL = 6
EPOCHS = 2
TRAIN = ("train.yaml", "cpu.yaml")
EVAL = ("train.yaml", "evaluate.yaml", "cpu.yaml")
SMALL = {"image_size": SIZE, "num_workers": 0, "seed": 0, "epochs": EPOCHS, "val_interval": 1, "tb_num_images": 2}


def _workflow(configs, workflow_type: str, config_dir: Path = CONFIGS, **override) -> ConfigWorkflow:
    configs = (configs,) if isinstance(configs, str) else configs
    wf = ConfigWorkflow(
        config_file=[str(config_dir / c) for c in configs],
        meta_file=str(config_dir / "metadata.json"),
        logging_file=str(config_dir / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
    wf.initialize()
    return wf


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("busi_joint")
    data = make_busi_demo(str(base / "data"), num_per_class=NUM_PER_CLASS, size=SIZE, seed=0, include_normal=True)
    out = str(base / "out")
    wf = _workflow(TRAIN, "train", dataset_dir=data, output_dir=out, **SMALL)
    wf.run()
    result = {
        "data": data, "out": out, "base": base,
        "metrics": dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics),
        "minority": wf.parser.get_parsed_content("network").augmentor.minority.tolist(),
        "class_weight": wf.parser.get_parsed_content("loss").class_weight.clone(),
        "train_ids": [d["case_id"] for d in wf.parser.get_parsed_content("train_datalist")],
        "val_ids": [d["case_id"] for d in wf.parser.get_parsed_content("val_datalist")],
    }
    wf.finalize()
    return result


def test_training_writes_the_run_folder_and_tensorboard_panels(trained):
    out = Path(trained["out"])
    assert (out / "models" / "model.pt").is_file()
    assert (out / "models" / f"checkpoint_epoch={EPOCHS}.pt").is_file()
    assert {p.name for p in (out / "configs").iterdir()} >= {
        "train.yaml", "evaluate.yaml", "inference.yaml", "metadata.json", "logging.conf"}
    inference = ConfigParser.load_config_file(str(out / "configs" / "inference.yaml"))
    assert inference["image_size"] == SIZE and inference["encoder"] == "efficientnet-b0"
    assert inference["network_def"]["decoder_channels"] == [32, 16, 16, 8, 8]
    assert "train_datalist" not in inference  # the network does not depend on the training fold
    assert {"val_f1_macro", "f1_macro", "auc", "val_mask_dice", "sensitivity_normal"} <= set(trained["metrics"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "logs"), size_guidance={"images": 0})
    acc.Reload()
    assert "val_segcls" in acc.Tags()["images"]
    assert [e.step for e in acc.Images("val_segcls")] == list(range(1, EPOCHS + 1))
    assert [e.step for e in acc.Scalars("lr/group_0")] == list(range(1, EPOCHS + 1))
    assert acc.Images("val_segcls")[0].width == 3 * SIZE and acc.Images("val_segcls")[0].height == 2 * SIZE


def test_folds_are_stratified_and_class_counts_reach_network_and_loss(trained):
    datalist = busi_datalist(trained["data"], include_normal=True)
    train, val = kfold_split(datalist, num_folds=3, fold=0, stratify_key="label", seed=0)
    assert [d["case_id"] for d in train] == trained["train_ids"]
    assert sorted(d["label"] for d in val) == [0, 0, 1, 1, 2, 2]
    labels = [d["label"] for d in train]
    assert np.bincount(labels).tolist() == [4, 4, 4]
    # balanced fold: every weight N / (K n_c) is 1 and no class is a minority
    torch.testing.assert_close(trained["class_weight"], class_weights(labels, 3))
    torch.testing.assert_close(trained["class_weight"], torch.ones(3))
    assert trained["minority"] == [False, False, False]


@pytest.fixture(scope="module")
def evaluated(trained):
    wf = _workflow(EVAL, "eval", dataset_dir=trained["data"], output_dir=trained["out"], n_resamples=50, **SMALL)
    wf.run()
    wf.finalize()
    return Path(trained["out"]) / "eval"


def test_evaluation_report_classification_and_segmentation(trained, evaluated):
    with open(evaluated / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == NUM_VAL
    assert list(rows[0]) == ["case_id", "label", "prediction", "prob_normal", "prob_benign", "prob_malignant"]
    summary = json.loads((evaluated / "summary.json").read_text())
    assert np.asarray(summary["confusion_matrix"]).shape == (3, 3) and np.sum(summary["confusion_matrix"]) == NUM_VAL
    for key in ("auc", "f1_macro", "accuracy", "sensitivity_normal", "specificity_malignant", "auc_benign"):
        entry = summary["metrics"][key]
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], key
    section = summary["segmentation"]
    assert section["metrics"] == ["dice", "hd95", "nsd"] and section["lesion_classes"] == ["benign", "malignant"]
    with open(evaluated / "segmentation.csv") as f:
        seg_rows = list(csv.DictReader(f))
    assert sorted(r["case_id"] for r in seg_rows) == sorted(trained["val_ids"])
    lesion = [r for r in seg_rows if r["class"] != "normal"]
    assert section["all"]["dice"]["n"] == NUM_VAL and section["lesion"]["dice"]["n"] == len(lesion) == 4
    for subset, subset_rows in (("all", seg_rows), ("lesion", lesion)):
        for metric in ("dice", "hd95", "nsd"):
            mean = np.mean([float(r[metric]) for r in subset_rows])
            assert section[subset][metric]["mean"] == pytest.approx(mean), (subset, metric)
    diagonal = math.hypot(SIZE, SIZE)
    for row in seg_rows:  # the empty-mask rules on the normal images (empty truth)
        if row["class"] == "normal":
            dsc, hd, sd = float(row["dice"]), float(row["hd95"]), float(row["nsd"])
            assert (dsc, hd, sd) in ((1.0, 0.0, 1.0), (0.0, pytest.approx(diagonal), 0.0)), row
    markdown = (evaluated / "summary.md").read_text()
    assert "| f1_macro |" in markdown and "## Segmentation" in markdown
    assert "| lesion (benign, malignant) | 4 |" in markdown


def test_inference_masks_reproduce_the_evaluation_surface_metrics(trained, evaluated, tmp_path):
    """The inference masks (PNG at the image size) scored with pipelines.metrics.segmentation against the truth
    give the evaluation's per-image Dice, HD95 and NSD (2 px)."""
    from transforms.busi import load_busi_masks

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    datalist = {d["case_id"]: d for d in busi_datalist(trained["data"], include_normal=True)}
    for case_id in trained["val_ids"]:
        shutil.copy(datalist[case_id]["image"], inputs / f"{case_id}.png")
    pred_dir = tmp_path / "preds"
    wf = _workflow("inference.yaml", "infer", input_dir=str(inputs), pred_dir=str(pred_dir),
                   config_dir=Path(trained["out"]) / "configs")
    wf.run()
    wf.finalize()
    with open(trained["out"] + "/eval/segmentation.csv") as f:
        expected = {r["case_id"]: r for r in csv.DictReader(f)}
    with open(pred_dir / "predictions.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert len(rows) == NUM_VAL and {r["status"] for r in rows.values()} == {"ok"}
    with open(trained["out"] + "/eval/predictions.csv") as f:
        eval_probs = {r["case_id"]: r for r in csv.DictReader(f)}
    for case_id in trained["val_ids"]:
        row = rows[f"{case_id}.png"]
        for name in ("normal", "benign", "malignant"):  # the same network on the same pre-processed image
            assert float(row[f"prob_{name}"]) == pytest.approx(float(eval_probs[case_id][f"prob_{name}"]), abs=1e-5)
        pred = np.asarray(Image.open(pred_dir / row["mask"])) > 127
        truth, _ = load_busi_masks(datalist[case_id]["masks"], (SIZE, SIZE), datalist[case_id]["image"])
        truth = truth[0] > 0.5
        assert pred.shape == truth.shape == (SIZE, SIZE)
        assert dice(pred, truth) == pytest.approx(float(expected[case_id]["dice"]), abs=1e-9)
        assert hd95(pred, truth, (1.0, 1.0)) == pytest.approx(float(expected[case_id]["hd95"]), abs=1e-9)
        expected_nsd = float(expected[case_id]["nsd"])
        assert nsd(pred, truth, (1.0, 1.0), tolerance_mm=2.0) == pytest.approx(expected_nsd, abs=1e-9)
        assert (pred_dir / "figures" / f"{case_id}.png").is_file()


def test_inference_of_other_sizes_and_formats(trained, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    src = Path(trained["data"])
    Image.open(src / "benign" / "benign (2).png").save(inputs / "benign (2).png")  # RGB
    Image.open(src / "malignant" / "malignant (1).png").convert("L").resize((80, 48)).save(inputs / "m.jpg", quality=95)
    (inputs / "broken.png").write_bytes(b"not a png")
    pred_dir = tmp_path / "preds"
    wf = _workflow("inference.yaml", "infer", input_dir=str(inputs), pred_dir=str(pred_dir), save_figures=False,
                   config_dir=Path(trained["out"]) / "configs")
    wf.run()
    wf.finalize()
    with open(pred_dir / "predictions.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["broken.png"]["status"] == "error"
    for file, shape in (("benign (2).png", (SIZE, SIZE)), ("m.jpg", (48, 80))):
        row = rows[file]
        probs = [float(row[f"prob_{c}"]) for c in ("normal", "benign", "malignant")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["prediction"] == ("normal", "benign", "malignant")[int(np.argmax(probs))]
        mask = np.asarray(Image.open(pred_dir / row["mask"]))
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 255}
        assert float(row["lesion_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-6)
    assert not (pred_dir / "figures").exists()


def test_metadata_and_network_outputs():
    verify_bundle_metadata(str(CONFIGS / "metadata.json"))
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    fmt = meta["network_data_format"]
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "cpu.yaml")])
    parser.update({"dataset_dir": "unused", "device": "$torch.device('cpu')"})
    net = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        out = net(torch.zeros(1, fmt["inputs"]["image"]["num_channels"], SIZE, SIZE))
    assert set(out) == set(fmt["outputs"]) == {"seg", "logits"}
    assert out["logits"].shape == (1, fmt["outputs"]["logits"]["num_channels"])
    assert out["seg"].shape == (1, fmt["outputs"]["seg"]["num_channels"], SIZE, SIZE)
    assert not any(k.startswith("demo") for k in meta["eval_metrics"])  # demo numbers live in the model card
    loaded = ConfigParser()
    loaded.read_config(str(CONFIGS / "train.yaml"))
    loaded.update({"dataset_dir": "unused", "device": "$torch.device('cpu')", "output_dir": "/tmp/x"})
    assert loaded.get_parsed_content("num_folds") == 3 and loaded.get_parsed_content("learning_rate") == 1e-4
    assert loaded.get_parsed_content("encoder") == "efficientnet-b6"
    assert type(loaded.get_parsed_content("optimizer")).__name__ == "AdamW"
    assert list(loaded.get_parsed_content("validate#key_metric")) == ["val_f1_macro"]
    assert (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "LICENSE").is_file()


def test_fold_ensemble_overlay_on_the_run_folder(trained, evaluated, tmp_path):
    """The cross-validation's ensemble overlay on this bundle's run-folder inference.yaml: two copies of one fold model
    average to that model (mean of equal class and mask probabilities), through JointSegClsPredictor."""
    from pipelines.experiments.crossval import run_checkpoint, write_ensemble_overlay

    run = Path(trained["out"])
    ckpt = run_checkpoint(run, "busi_joint_segcls")
    assert ckpt == run / "models" / "model.pt"
    cv_dir = tmp_path / "cv"
    overlay = write_ensemble_overlay(cv_dir, [str(ckpt), str(ckpt)], run / "configs" / "inference.yaml")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    datalist = {d["case_id"]: d for d in busi_datalist(trained["data"], include_normal=True)}
    for case_id in trained["val_ids"]:
        shutil.copy(datalist[case_id]["image"], inputs / f"{case_id}.png")
    configs = run / "configs"
    wf = ConfigWorkflow(
        config_file=[str(configs / "inference.yaml"), overlay], meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"), workflow_type=None, run_id="inference", input_dir=str(inputs),
        save_figures=False,
    )
    wf.initialize()
    assert len(wf.parser.get_parsed_content("network").networks) == 2
    wf.run()
    wf.finalize()
    with open(cv_dir / "predictions" / "predictions.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    with open(run / "eval" / "predictions.csv") as f:
        single = {r["case_id"]: r for r in csv.DictReader(f)}
    assert len(rows) == NUM_VAL and {r["status"] for r in rows.values()} == {"ok"}
    for case_id in trained["val_ids"]:
        for name in ("normal", "benign", "malignant"):
            assert float(rows[f"{case_id}.png"][f"prob_{name}"]) == pytest.approx(
                float(single[case_id][f"prob_{name}"]), abs=1e-5)
