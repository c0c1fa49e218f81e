"""MALC and HVSMR bundles (softmax multi-class, shared recipe): train, evaluate (the overlay
``[train.yaml, evaluate.yaml]``) and infer (dataset root and plain folder) on demo data."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigWorkflow, verify_net_in_out

from pipelines.bundles.metadata import verify_bundle_metadata
from pipelines.data import HVSMR_LABELS, MALC_LABELS, make_hvsmr_demo, make_malc_demo
from pipelines.metrics import compute_segmentation_metrics

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
CASES = {
    # bundle: (demo maker, roi, allowed labels, margin over the baseline; measured after 8 epochs, seed 0: MALC 0.110
    # vs baseline 0.001, HVSMR 0.482 vs 0.045)
    "malc_segmentation": (make_malc_demo, [48, 56, 48], MALC_LABELS, 0.06),
    "hvsmr_segmentation": (make_hvsmr_demo, [48, 48, 40], HVSMR_LABELS, 0.25),
}
EPOCHS = 8
EVALUATE = ["train.yaml", "evaluate.yaml"]  # the overlay on its base


def _baseline_dice(label_files, num_classes: int) -> float:
    """The best constant prediction's mean foreground Dice: labelling every voxel with class c scores
    2 |G_c| / (|G_c| + N) on class c and 0 on the others (or 1 where a class is absent from both)."""
    scores = []
    for path in label_files:
        labels = np.asarray(nib.load(path).dataobj)
        sizes = [int((labels == c).sum()) for c in range(1, num_classes)]
        for c, size in enumerate(sizes):
            # the constant c: Dice on class c; on each other class d: 0 if d is present, else 1 (both empty)
            scores.append(np.mean([2 * size / (size + labels.size) if d == c else float(sizes[d] == 0)
                                   for d in range(len(sizes))]))
    return float(np.max(scores))


def _run(bundle: str, config, **override) -> ConfigWorkflow:
    configs = BUNDLES / bundle / "configs"
    files = [config] if isinstance(config, str) else config
    wf = ConfigWorkflow(config_file=[str(configs / c) for c in files], meta_file=str(configs / "metadata.json"),
                        logging_file=str(configs / "logging.conf"), workflow_type=None, **override)
    wf.initialize()
    wf.run()
    return wf


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_train_evaluate_infer_on_demo_layout(bundle, tmp_path):
    make, roi, allowed, margin = CASES[bundle]
    data = make(str(tmp_path / "data"), num_cases=6, seed=2)
    common = {"dataset_dir": data, "output_dir": str(tmp_path / "out"), "roi_size": roi, "num_workers": 0,
              "sw_batch_size": 2, "network_def#features": [8, 16, 32, 64]}
    wf = _run(bundle, "train.yaml", epochs=EPOCHS, val_interval=EPOCHS, cache_rate=1.0, batch_size=2,
              learning_rate=0.003, **common)
    validator = wf.parser.get_parsed_content("validate#evaluator")
    metrics, best = dict(validator.state.metrics), validator.state.best_metric
    class_names = wf.parser.get_parsed_content("class_names")
    masks = {item["case_id"]: item["label"] for item in wf.parser.get_parsed_content("val_datalist")}
    wf.finalize()
    # learning: the one validation beats the best constant prediction on these validation cases by a margin
    baseline = _baseline_dice(list(masks.values()), len(class_names) + 1)
    assert metrics["val_mean_dice"] > baseline + margin, (baseline, metrics)
    assert {f"val_mean_dice_{c}" for c in class_names} <= set(metrics)
    assert (tmp_path / "out" / "models" / "model.pt").is_file()

    wf = _run(bundle, EVALUATE, **common)
    reported = wf.parser.get_parsed_content("validate#evaluator").state.metrics
    wf.finalize()
    with open(tmp_path / "out" / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["case_id"] + [f"{m}_{c}" for c in class_names for m in ("dice", "hd95", "nsd")]
    # one Dice: training's checkpoint selection scored exactly what the evaluation reports for that checkpoint
    assert reported["val_mean_dice"] == pytest.approx(best, abs=1e-6)
    for c in class_names:
        assert reported[f"dice_{c}"] == pytest.approx(metrics[f"val_mean_dice_{c}"], abs=1e-6)
    summary = json.loads((tmp_path / "out" / "eval" / "summary.json").read_text())
    for column in rows[0]:
        if column != "case_id":
            assert summary[column]["mean"] == pytest.approx(np.mean([float(r[column]) for r in rows]), abs=1e-9)

    pred_dir = tmp_path / "pred"
    wf = _run(bundle, "inference.yaml", pred_dir=str(pred_dir), **common)
    wf.finalize()
    images = sorted(os.listdir(os.path.join(data, "images")))
    assert sorted(os.listdir(pred_dir)) == images
    for name in images:
        ref = nib.load(os.path.join(data, "images", name))
        pred = nib.load(os.path.join(pred_dir, name))
        assert pred.shape == ref.shape
        np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-4)
        assert set(np.unique(np.asarray(pred.dataobj))) <= set(allowed)
    # the evaluation's rows are the metric functions applied to the saved label maps (written in the input grid)
    for row in rows:
        case = row["case_id"]
        pred = nib.load(os.path.join(pred_dir, f"{case}.nii.gz"))
        truth = np.asarray(nib.load(masks[case]).dataobj)
        labels = np.asarray(pred.dataobj)
        onehot = lambda x: np.stack([x == c for c in range(1, len(class_names) + 1)])  # noqa: E731
        values = compute_segmentation_metrics(onehot(labels), onehot(truth),
                                              spacing=[float(z) for z in pred.header.get_zooms()[:3]],
                                              class_names=class_names, tolerance_mm=1.0)
        for key, value in values.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-4), (case, key)

    # a plain folder of volumes gives the same label maps as the dataset root
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in images[:2]:
        (flat / name).write_bytes(Path(data, "images", name).read_bytes())
    flat_pred = tmp_path / "pred_flat"
    wf = _run(bundle, "inference.yaml", input_dir=str(flat), pred_dir=str(flat_pred), **common)
    wf.finalize()
    assert sorted(os.listdir(flat_pred)) == images[:2]
    for name in images[:2]:
        np.testing.assert_array_equal(np.asarray(nib.load(flat_pred / name).dataobj),
                                      np.asarray(nib.load(pred_dir / name).dataobj))

    # inference refuses to write into the input tree
    with pytest.raises(Exception) as info:
        _run(bundle, "inference.yaml", pred_dir=os.path.join(data, "images", "preds"), **common)
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__
    assert any("inside the input folder" in m for m in chain)


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_metadata_and_network_shapes(bundle):
    configs = BUNDLES / bundle / "configs"
    verify_bundle_metadata(str(configs / "metadata.json"))
    roi = CASES[bundle][1]
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"),
                      config_file=str(configs / "train.yaml"), n_batch=1,
                      **{"roi_size": roi, "network_def#features": [8, 16, 32, 64],
                         "_meta_#network_data_format#inputs#image#spatial_shape": roi,
                         "_meta_#network_data_format#outputs#pred#spatial_shape": roi})
