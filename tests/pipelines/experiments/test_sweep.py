from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.data import make_hvsmr_demo
from pipelines.experiments.sweep import (
    Cell,
    expand_cells,
    load_sweep,
    markdown_table,
    plot_bars,
    run_sweep,
    summarise,
)

REPO = Path(__file__).resolve().parents[3]
ABLATION = REPO / "configs" / "experiments" / "attention_ablation.yaml"


def test_full_grid_matches_the_paper_table():
    spec = load_sweep(str(ABLATION))
    cells = expand_cells(spec)
    # 3 datasets x 5 folds x (7 attentions on UNet + 5 on VNet: no PE, no AG as in the paper)
    assert len(cells) == 3 * 5 * (7 + 5)
    assert Cell("malc", "malc_segmentation", "vnet", "pam", 4) in cells
    assert not any(c.backbone == "vnet" and c.attention in ("pe", "ag") for c in cells)


def test_profile_and_changes_are_layered():
    spec = load_sweep(str(ABLATION), "demo", folds=[3], overrides={"epochs": 1})
    assert list(spec["datasets"]) == ["hvsmr"] and spec["folds"] == [3]
    assert spec["overrides"]["epochs"] == 1 and spec["overrides"]["num_workers"] == 0  # merged, not replaced
    with pytest.raises(ValueError, match="no profile 'nope'"):
        load_sweep(str(ABLATION), "nope")
    with pytest.raises(ValueError, match="unknown datasets"):
        load_sweep(str(ABLATION), datasets=["lung"])


def test_summary_table_and_plot(tmp_path):
    rows = [
        {"dataset": "hvsmr", "backbone": "unet", "attention": a, "fold": f, "val_dice": d, "params": p,
         "sec_per_step": 0.5}
        for a, p, ds in (("none", 10, (0.5, 0.7)), ("pam", 12, (0.8, 0.8)))
        for f, d in enumerate(ds)
    ]
    summary = {(s["attention"]): s for s in summarise(rows)}
    assert summary["none"]["dice_mean"] == pytest.approx(0.6)
    assert summary["none"]["dice_std"] == pytest.approx(0.1414213, abs=1e-6)  # sample std of (0.5, 0.7)
    assert summary["pam"]["dice_std"] == 0.0
    table = markdown_table(list(summary.values()), ["none", "se", "pam"])
    assert "| unet | hvsmr | 0.6000 ± 0.1414 | 0.8000 ± 0.0000 |" in table
    assert "| se |" not in table.splitlines()[0]  # attentions without results get no column
    png = plot_bars(list(summary.values()), ["none", "pam"], str(tmp_path / "dice.png"))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_runs_bundles_and_resumes(tmp_path):
    data = make_hvsmr_demo(str(tmp_path / "data"), num_cases=4, shape=(32, 32, 24), seed=5)
    spec = {
        "output_dir": str(tmp_path / "sweep"),
        "datasets": {"hvsmr": {"bundle": "hvsmr_segmentation"}},
        "backbones": ["unet"],
        "attentions": ["none", "pam"],
        "folds": [0],
        "overrides": {"epochs": 1, "val_interval": 1, "num_workers": 0, "cache_rate": 1.0, "batch_size": 2,
                      "sw_batch_size": 2, "network_def#features": [4, 8, 16, 32], "num_folds": 2},
        "dataset_overrides": {"hvsmr": {"dataset_dir": data, "roi_size": [32, 32, 24]}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    first = run_sweep(str(path))
    assert (first["ran"], first["skipped"]) == (2, 0)
    table = Path(first["table"]).read_text()
    assert "| unet | hvsmr |" in table and "pam" in table.splitlines()[0]
    assert Path(first["plot"]).is_file()
    with open(first["results"]) as f:
        header = f.readline().strip().split(",")
    assert {"val_dice", "params", "sec_per_step", "attention", "fold"} <= set(header)
    again = run_sweep(str(path))
    assert (again["ran"], again["skipped"]) == (0, 2)
