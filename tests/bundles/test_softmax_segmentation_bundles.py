"""MALC and HVSMR bundles (softmax multi-class, shared recipe): train, evaluate and infer on demo data."""

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

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
CASES = {
    # bundle: (demo maker, roi (x, y, z), allowed labels, (class whose Dice must exceed, threshold))
    "malc_segmentation": (make_malc_demo, [48, 56, 48], MALC_LABELS, ("mean", 0.1)),
    "hvsmr_segmentation": (make_hvsmr_demo, [48, 48, 40], HVSMR_LABELS, ("blood_pool", 0.6)),
}
EPOCHS = 8


def _run(bundle: str, config: str, **override) -> ConfigWorkflow:
    configs = BUNDLES / bundle / "configs"
    wf = ConfigWorkflow(config_file=str(configs / config), meta_file=str(configs / "metadata.json"),
                        logging_file=str(configs / "logging.conf"), workflow_type=None, **override)
    wf.initialize()
    wf.run()
    return wf


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_train_evaluate_infer_on_demo_layout(bundle, tmp_path):
    make, roi, allowed, (check_class, threshold) = CASES[bundle]
    data = make(str(tmp_path / "data"), num_cases=6, seed=2)
    common = {"dataset_dir": data, "output_dir": str(tmp_path / "out"), "roi_size": roi, "num_workers": 0,
              "sw_batch_size": 2, "network_def#features": [8, 16, 32, 64]}
    wf = _run(bundle, "train.yaml", epochs=EPOCHS, val_interval=EPOCHS, cache_rate=1.0, batch_size=2,
              learning_rate=0.003, **common)
    metrics = dict(wf.parser.get_parsed_content("validate#evaluator").state.metrics)
    class_names = wf.parser.get_parsed_content("class_names")
    wf.finalize()
    key = "val_mean_dice" if check_class == "mean" else f"val_mean_dice_{check_class}"
    assert metrics[key] > threshold, metrics
    assert {f"val_mean_dice_{c}" for c in class_names} <= set(metrics)
    assert (tmp_path / "out" / "models" / "model.pt").is_file()

    wf = _run(bundle, "evaluate.yaml", **common)
    wf.finalize()
    with open(tmp_path / "out" / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["case_id"] + [f"{m}_{c}" for c in class_names for m in ("dice", "hd95", "nsd")]
    per_class = [np.mean([float(r[f"dice_{c}"]) for r in rows]) for c in class_names]
    # the evaluation's Dice (empty-mask convention: both empty -> 1) against the training validation's
    # (MONAI's, which skips empty classes): equal where no class is empty in a validation case
    if all(float(r[f"dice_{c}"]) < 1.0 for r in rows for c in class_names):
        assert np.mean(per_class) == pytest.approx(metrics["val_mean_dice"], abs=1e-4)
    summary = json.loads((tmp_path / "out" / "eval" / "summary.json").read_text())
    assert summary[f"hd95_{class_names[-1]}"]["mean"] >= 0.0

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
