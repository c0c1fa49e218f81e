"""The encoder x decoder sweep of busi_joint_segcls (configs/sweeps/busi_joint_segcls_encoders.yaml): the grid, and
its demo profile through the sweep command (dataset entry ``keys`` -> the bundle's ``encoder`` / ``decoder`` keys,
``overlays`` -> cpu.yaml) shrunk to one encoder, both decoders and one epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from pipelines.experiments import expand_cells, load_sweep, run_sweep

SWEEP = Path(__file__).resolve().parents[3] / "configs" / "sweeps" / "busi_joint_segcls_encoders.yaml"


def test_grid_is_encoders_by_decoders_by_folds():
    cells = expand_cells(load_sweep(str(SWEEP)))
    encoders = [f"efficientnet-b{i}" for i in range(7)] + ["resnet18", "resnet50"]
    assert len(cells) == len(encoders) * 2 * 3
    assert {c.backbone for c in cells} == set(encoders) and {c.attention for c in cells} == {"unet", "unetplusplus"}
    assert {c.fold for c in cells} == {0, 1, 2} and {c.bundle for c in cells} == {"busi_joint_segcls"}


def test_demo_profile_trains_each_decoder(tmp_path):
    result = run_sweep(str(SWEEP), "demo", output_dir=str(tmp_path / "sweep"), backbones=["efficientnet-b0"],
                       overrides={"epochs": 1, "num_workers": 0, "image_size": 64})
    assert result["ran"] == 2 and result["skipped"] == 0
    with open(result["results"]) as f:
        rows = {r["attention"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"unet", "unetplusplus"}
    # the decoders differ (UNet++ has the nested nodes): different parameter counts
    assert int(rows["unet"]["params"]) < int(rows["unetplusplus"]["params"])
    for decoder in ("unet", "unetplusplus"):
        run = tmp_path / "sweep" / "busi" / "efficientnet-b0" / decoder / "fold0"
        with open(run / "configs" / "train.yaml") as f:
            config = yaml.safe_load(f)
        assert (config["encoder"], config["decoder"], config["image_size"]) == ("efficientnet-b0", decoder, 64)
        assert 0.0 <= float(rows[decoder]["val_dice"]) <= 1.0 and "last_val_mask_dice" in rows[decoder]
    assert "| efficientnet-b0 | busi |" in Path(result["table"]).read_text()
