"""Runs the real lesion-detection bundle configs (train.yaml + cpu.yaml, evaluate.yaml, the run folder's configs) on tiny
demo data: training on the BUSI-layout demo, fine-tuning from its run folder on the scanner-frame demo with the frame
crop and a frozen backbone and pyramid (the seed's BUSI -> clinic step), evaluation report, inference from the run
folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from pipelines.data import (
    detection_split,
    frame_detection_datalist,
    make_busi_demo,
    make_scanner_frame_demo,
)

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "busi_detection"
CONFIGS = BUNDLE / "configs"
SIZE = 64
TRAIN = ("train.yaml", "cpu.yaml")
SMALL = {"image_size": SIZE, "num_workers": 0, "seed": 0, "epochs": 2, "val_interval": 1, "tb_num_images": 2,
         "batch_size": 4}


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
def runs(tmp_path_factory):
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    base = tmp_path_factory.mktemp("busi_detection")
    busi = make_busi_demo(str(base / "busi"), num_per_class=4, size=SIZE, seed=0, include_normal=True)
    frames = make_scanner_frame_demo(str(base / "frames"), num_frames=18, height=120, width=160, seed=0)
    first, second = str(base / "busi_run"), str(base / "frames_run")

    wf = _workflow(TRAIN, "train", dataset_dir=busi, output_dir=first, **SMALL)
    wf.run()
    result = {"busi": busi, "frames": frames, "first": first, "second": second,
              "metrics": dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)}
    wf.finalize()

    # fine-tuning: the first run's weights, the scanner-frame crop, body and pyramid frozen (only the heads train)
    wf = _workflow(TRAIN, "train", dataset_dir=frames, output_dir=second, init_from=first, crop_frame=True,
                   freeze_backbone=True, freeze_fpn=True, **{**SMALL, "epochs": 1})
    loaded = wf.parser.get_parsed_content("init_weights")  # the run id reuses this result: loaded once, here
    network = wf.parser.get_parsed_content("network")
    result["init"] = loaded
    result["start"] = {k: v.detach().clone() for k, v in network.state_dict().items()}
    result["val_ids"] = [d["case_id"] for d in wf.parser.get_parsed_content("val_datalist")]
    wf.run()
    result["end"] = {k: v.detach().clone() for k, v in network.state_dict().items()}
    wf.finalize()
    return result


def test_training_writes_the_run_folder_and_tensorboard_panels(runs):
    out = Path(runs["first"])
    assert (out / "models" / "model.pt").is_file() and (out / "models" / "checkpoint_epoch=2.pt").is_file()
    assert {p.name for p in (out / "configs").iterdir()} >= {
        "train.yaml", "evaluate.yaml", "inference.yaml", "metadata.json", "logging.conf"}
    inference = ConfigParser.load_config_file(str(out / "configs" / "inference.yaml"))
    assert inference["image_size"] == SIZE and inference["channels"] == 1 and inference["depth"] == 18
    assert inference["anchor_sizes"] == [16, 32, 64, 128] and inference["returned_layers"] == [1, 2, 3]
    assert inference["network_def"]["block_inplanes"] == [16, 32, 64, 128]
    assert "train_datalist" not in inference
    metrics = runs["metrics"]
    assert {"val_ap50", "val_ap50_map", "val_ap50_froc", "val_ap50_selection_score"} <= set(metrics)
    assert 0.0 <= metrics["val_ap50"] <= 1.0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "logs"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("val_boxes")] == [1, 2]
    picture = acc.Images("val_boxes")[0]
    assert (picture.width, picture.height) == (2 * SIZE, 2 * SIZE)  # 2 images x (truth, prediction)
    assert {"loss", "loss_classification", "loss_box_regression", "lr/group_0", "val_ap50"} <= set(acc.Tags()["scalars"])
    for event in acc.Scalars("loss"):  # the logged loss is the sum of its logged terms (weights 1, 1)
        parts = [e.value for name in ("loss_classification", "loss_box_regression") for e in acc.Scalars(name)
                 if e.step == event.step]
        assert event.value == pytest.approx(sum(parts), rel=1e-5)


def test_fine_tuning_starts_from_the_run_folder_and_trains_the_heads_only(runs):
    assert runs["init"][1] == str(Path(runs["first"]) / "models" / "model.pt")
    trained = torch.load(runs["init"][1], map_location="cpu", weights_only=True)
    assert set(trained) == set(runs["start"])
    for key, value in trained.items():
        torch.testing.assert_close(runs["start"][key], value)  # the first run's best model
    start, end = runs["start"], runs["end"]
    frozen = [k for k in start if k.startswith("feature_extractor.")]
    assert frozen and all(torch.equal(start[k], end[k]) for k in frozen)  # weights and BatchNorm statistics
    assert not torch.equal(start["classification_head.cls_logits.weight"], end["classification_head.cls_logits.weight"])
    assert not torch.equal(start["regression_head.bbox_reg.weight"], end["regression_head.bbox_reg.weight"])
    recorded = ConfigParser.load_config_file(str(Path(runs["second"]) / "configs" / "train.yaml"))
    assert recorded["init_from"] == runs["first"] and recorded["crop_frame"] is True
    # the frame demo's patients stay on one side of the split
    train, val = detection_split(frame_detection_datalist(runs["frames"]), val_fraction=0.2, seed=0)
    assert [d["case_id"] for d in val] == runs["val_ids"]
    assert not {d["patient_id"] for d in train} & {d["patient_id"] for d in val}


def test_evaluation_from_the_run_folder_writes_the_report(runs):
    out = Path(runs["second"])
    configs = out / "configs"
    wf = _workflow(("train.yaml", "evaluate.yaml"), "eval", config_dir=configs, n_resamples=20)
    wf.run()
    metrics = dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)
    wf.finalize()
    evaluated = out / "eval"
    assert {"detections.csv", "per_image.csv", "summary.json", "summary.md", "froc.png"} <= {
        p.name for p in evaluated.iterdir()}
    with open(evaluated / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["case_id"] for r in rows) == sorted(runs["val_ids"])
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["n_images"] == len(runs["val_ids"])
    for key in ("map", "ap50", "froc", "selection_score"):
        entry = summary["metrics"][key]
        assert entry["value"] == pytest.approx(metrics[f"val_ap50_{key}"], nan_ok=True)
    assert "AP50" in (evaluated / "summary.md").read_text()


def test_inference_from_the_run_folder(runs, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in sorted(Path(runs["frames"]).glob("*.png"))[:3]:
        (inputs / path.name).write_bytes(path.read_bytes())
    pred_dir = tmp_path / "preds"
    wf = _workflow("inference.yaml", "infer", config_dir=Path(runs["second"]) / "configs", input_dir=str(inputs),
                   pred_dir=str(pred_dir), save_figures=False)
    wf.run()
    wf.finalize()
    with open(pred_dir / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}


def test_metadata_and_defaults():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    parser.update({"dataset_dir": "unused", "device": "$torch.device('cpu')", "output_dir": "/tmp/unused"})
    assert parser.get_parsed_content("learning_rate") == 1e-4 and parser.get_parsed_content("depth") == 50
    assert type(parser.get_parsed_content("optimizer")).__name__ == "Adam"
    assert type(parser.get_parsed_content("lr_scheduler")).__name__ == "StepLR"
    assert list(parser.get_parsed_content("validate#key_metric")) == ["val_ap50"]
    network = parser.get_parsed_content("network_def").eval()
    detector = parser.get_parsed_content("detector")
    assert network.feature_extractor.strides == (4, 8, 16, 32, 64)
    assert [tuple(c.shape) for c in detector.anchor_generator.cell_anchors] == [(3, 4)] * 5
    sizes = [float(c[-1, 2] - c[-1, 0]) for c in detector.anchor_generator.cell_anchors]  # aspect 1.0 anchors
    assert sizes == [32.0, 64.0, 128.0, 256.0, 512.0]
    image = meta["network_data_format"]["inputs"]["image"]
    with torch.no_grad():
        out = network(torch.zeros(1, image["num_channels"], 64, 64))
    for key, fmt in meta["network_data_format"]["outputs"].items():
        assert all(o.shape[1] == fmt["num_channels"] for o in out[key])
    assert (BUNDLE / "docs" / "README.md").is_file() and (BUNDLE / "LICENSE").is_file()
