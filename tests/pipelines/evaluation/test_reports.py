from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from pipelines.evaluation import MetricsReportHandler
from pipelines.evaluation.reports import (
    bootstrap_mean_ci,
    markdown_table,
    write_classification_report,
    write_segmentation_report,
)
from pipelines.metrics import ClassificationMetricsHandler, roc_auc

CLASSES = ("TC", "WT", "ET")
METRICS = ("dice", "hd95", "nsd")


class _TextWriter:
    """Stands in for a TensorBoard SummaryWriter."""

    def __init__(self):
        self.texts = []

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def flush(self):
        pass


def _rows(n: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"case_id": f"case_{i}", **{f"{m}_{c}": float(rng.random() * (100 if m == "hd95" else 1))
                                    for c in CLASSES for m in METRICS}}
        for i in range(n)
    ]


def test_segmentation_report_files(tmp_path):
    rows = _rows()
    writer = _TextWriter()
    summary = write_segmentation_report(rows, tmp_path, CLASSES, METRICS, tb_writer=writer, step=3, n_resamples=300)
    columns = [f"{m}_{c}" for c in CLASSES for m in METRICS]
    with open(tmp_path / "metrics.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["case_id", *columns]
        table = list(reader)
    assert [r["case_id"] for r in table] == [r["case_id"] for r in rows]
    assert float(table[4]["hd95_WT"]) == pytest.approx(rows[4]["hd95_WT"])
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved.keys() == summary.keys() and all(saved[k] == pytest.approx(summary[k]) for k in summary)
    for column in columns:
        s = summary[column]
        values = np.array([r[column] for r in rows])
        assert set(s) == {"mean", "std", "median", "ci_low", "ci_high", "n"}
        assert s["n"] == len(rows)
        assert s["mean"] == pytest.approx(values.mean()) and s["std"] == pytest.approx(values.std(ddof=1))
        assert s["median"] == pytest.approx(np.median(values))
        assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    md = markdown_table(summary, CLASSES, METRICS)
    assert all(f"| {c} |" in md for c in CLASSES) and all(m in md.splitlines()[0] for m in METRICS)
    assert f"{summary['dice_ET']['mean']:.3f} ± {summary['dice_ET']['std']:.3f}" in md
    assert (tmp_path / "summary.md").read_text().strip() == md
    assert writer.texts == [("segmentation_metrics", md, 3)]
    # seeded: the same CI again
    assert write_segmentation_report(rows, tmp_path / "again", CLASSES, METRICS, n_resamples=300) == summary


def test_segmentation_report_rejects_missing_columns(tmp_path):
    rows = _rows(2)
    del rows[1]["nsd_ET"]
    with pytest.raises(KeyError, match="nsd_ET"):
        write_segmentation_report(rows, tmp_path, CLASSES, METRICS)


def test_bootstrap_mean_ci_edge_cases():
    assert bootstrap_mean_ci([0.7]) == (0.7, 0.7)
    assert all(np.isnan(bootstrap_mean_ci([])))
    assert bootstrap_mean_ci([1, 2, 3, 4], seed=1) == bootstrap_mean_ci([1, 2, 3, 4], seed=1)


def test_classification_report_files(tmp_path):
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    prob = np.full((8, 3), 0.1) + 0.7 * np.eye(3)[[0, 1, 2, 1, 1, 2, 0, 0]]
    writer = _TextWriter()
    report = write_classification_report(y, prob, tmp_path, ["a", "b", "c"], tb_writer=writer, n_resamples=100)
    with open(tmp_path / "predictions.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["case_id", "label", "prediction", "prob_a", "prob_b", "prob_c"]
    assert (table[3]["label"], table[3]["prediction"]) == ("a", "b")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["metrics"]["auc"]["value"] == pytest.approx(roc_auc(y, prob)) == report["metrics"]["auc"]["value"]
    md = (tmp_path / "summary.md").read_text()
    assert "| auc |" in md and "| f1_macro |" in md and writer.texts[0][1] == md.strip()


def test_report_handler_writes_classification_report(tmp_path):
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    prob = torch.tensor([0.2, 0.9, 0.6, 0.4, 0.3, 0.1])
    engine = Engine(lambda e, b: b)
    handler = ClassificationMetricsHandler(class_names=["neg", "pos"], output_transform=lambda o: (o[0], o[1]))
    handler.attach(engine, "val_auc")
    MetricsReportHandler(save_dir=str(tmp_path), handler=handler, n_resamples=50).attach(engine)
    engine.run([(prob[:3], y[:3]), (prob[3:], y[3:])], max_epochs=1)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["class_names"] == ["neg", "pos"]
    assert saved["metrics"]["auc"]["value"] == pytest.approx(engine.state.metrics["val_auc"])
    # 3 positives x 3 negatives: 0.9 and 0.6 beat all 3 negatives, 0.3 beats 0.2 and 0.1 -> 8 of 9
    assert engine.state.metrics["val_auc"] == pytest.approx(8 / 9)
