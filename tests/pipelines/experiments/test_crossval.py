"""``python -m pipelines cross-validate``: a 2-fold, 1-epoch run of the cxr_lung_segmentation bundle (cpu.yaml) on
8 Montgomery-layout demo cases; finished folds are skipped; per-fold, pooled out-of-fold and the fold-ensemble
inference overlay. The pooling functions are checked against hand computations on hand-written tables."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from pipelines.cli import main
from pipelines.data import make_montgomery_demo
from pipelines.experiments import cross_validate
from pipelines.experiments.crossval import (
    flatten_summary,
    fold_table,
    pool_per_case,
    pool_predictions,
)
from pipelines.metrics.classification import classification_report

NUM_CASES = 8


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write(path, header, rows) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def cv(tmp_path_factory):
    data = make_montgomery_demo(str(tmp_path_factory.mktemp("mcu")), num_cases=NUM_CASES, size=64)
    out = tmp_path_factory.mktemp("cv") / "lungs_cv"
    main(["cross-validate", "cxr_lung_segmentation", "--num_folds", "2", "--output_dir", str(out),
          "--overlays", "[cpu.yaml]", "--dataset_dir", data, "--epochs", "1", "--val_interval", "1",
          "--n_resamples", "20"])
    return out, data


def test_every_fold_is_a_trained_and_evaluated_run_folder(cv):
    out, _ = cv
    for fold in (0, 1):
        run = out / f"fold{fold}"
        assert (run / "models" / "model.pt").is_file() and (run / "configs" / "train.yaml").is_file()
        assert (run / "eval" / "metrics.csv").is_file() and (run / "cv_fold.json").is_file()
    # the two validation splits are disjoint and cover every case once: out-of-fold
    ids = [r["case_id"] for fold in (0, 1) for r in _rows(out / f"fold{fold}" / "eval" / "metrics.csv")]
    assert len(ids) == NUM_CASES and len(set(ids)) == NUM_CASES


def test_summary_per_fold_mean_sd_and_pooled_out_of_fold(cv):
    out, _ = cv
    with open(out / "cv_summary.json") as f:
        summary = json.load(f)
    assert summary["folds"] == [0, 1] and summary["num_folds"] == 2
    folds = []
    for fold in (0, 1):
        with open(out / f"fold{fold}" / "eval" / "summary.json") as f:
            folds.append(json.load(f)["dice_lung"]["mean"])
    row = next(r for r in _rows(out / "cv_summary.csv") if r["metric"] == "dice_lung")
    assert [float(row["fold0"]), float(row["fold1"])] == pytest.approx(folds)
    assert float(row["mean"]) == pytest.approx((folds[0] + folds[1]) / 2)
    assert float(row["sd"]) == pytest.approx(abs(folds[0] - folds[1]) / np.sqrt(2))
    cases = [float(r["dice_lung"]) for fold in (0, 1) for r in _rows(out / f"fold{fold}" / "eval" / "metrics.csv")]
    pooled = summary["pooled"]["metrics.csv"]["dice_lung"]
    assert pooled["n"] == NUM_CASES and pooled["mean"] == pytest.approx(np.mean(cases))
    assert pooled["std"] == pytest.approx(np.std(cases, ddof=1))
    md = (out / "cv_summary.md").read_text()
    assert "| dice_lung |" in md and "Pooled out-of-fold: metrics.csv" in md


def test_finished_folds_are_skipped(cv):
    out, data = cv
    stamps = {f: os.stat(out / f"fold{f}" / "models" / "model.pt").st_mtime_ns for f in (0, 1)}
    result = cross_validate("cxr_lung_segmentation", num_folds=2, output_dir=str(out), overlays=["cpu.yaml"],
                            dataset_dir=data, epochs=1, val_interval=1, n_resamples=20)
    assert result["trained"] == [] and result["skipped"] == [0, 1]
    assert {f: os.stat(out / f"fold{f}" / "models" / "model.pt").st_mtime_ns for f in (0, 1)} == stamps
    assert sorted(result["folds"]) == [0, 1]
    # a fold trained but not evaluated (no cv_fold.json): the bundle's resume runs no epoch, then it is evaluated
    (out / "fold1" / "cv_fold.json").unlink()
    result = cross_validate("cxr_lung_segmentation", num_folds=2, output_dir=str(out), overlays=["cpu.yaml"],
                            dataset_dir=data, epochs=1, val_interval=1, n_resamples=20)
    assert result["trained"] == [1] and result["skipped"] == [0] and (out / "fold1" / "cv_fold.json").is_file()
    assert os.stat(out / "fold1" / "models" / "model.pt").st_mtime_ns == stamps[1]


def test_fold_ensemble_overlay_runs_inference(cv):
    out, data = cv
    overlay = out / "configs" / "ensemble.yaml"
    configs = out / "fold0" / "configs"
    wf = ConfigWorkflow(
        config_file=[str(configs / "inference.yaml"), str(overlay)], meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"), workflow_type=None, run_id="inference",
        input_dir=os.path.join(data, "CXR_png"),
    )
    wf.initialize()
    assert len(wf.parser.get_parsed_content("network").networks) == 2
    wf.run()
    wf.finalize()
    rows = _rows(out / "predictions" / "predictions.csv")
    assert len(rows) == NUM_CASES and {r["status"] for r in rows} == {"ok"}


def test_cross_validate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_folds"):
        cross_validate("cxr_lung_segmentation", num_folds=1, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="fold"):
        cross_validate("cxr_lung_segmentation", num_folds=2, output_dir=str(tmp_path), fold=1)
    with pytest.raises(ValueError, match=r"\[2\]"):
        cross_validate("cxr_lung_segmentation", num_folds=2, output_dir=str(tmp_path), folds=[2])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        cross_validate("cxr_lung_segmentation", num_folds=2, output_dir=str(tmp_path), overlays=["nope.yaml"])


def test_pooled_predictions_equal_a_hand_recomputation(tmp_path):
    header = ["case_id", "label", "prediction", "prob_a", "prob_b", "prob_c"]
    f0 = _write(tmp_path / "p0.csv", header, [["x0", "a", "a", 0.7, 0.2, 0.1], ["x1", "b", "a", 0.5, 0.4, 0.1],
                                              ["x2", "c", "c", 0.1, 0.1, 0.8]])
    f1 = _write(tmp_path / "p1.csv", header, [["y0", "b", "b", 0.1, 0.8, 0.1], ["y1", "c", "b", 0.2, 0.5, 0.3],
                                              ["y2", "a", "a", 0.6, 0.3, 0.1]])
    pooled = pool_predictions([f0, f1], n_resamples=0)
    assert pooled["n"] == 6 and pooled["folds"] == 2 and pooled["class_names"] == ["a", "b", "c"]
    assert pooled["metrics"]["accuracy"]["value"] == pytest.approx(4 / 6)  # x1 and y1 wrong
    assert pooled["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    # sensitivity of b: 1 of 2; specificity of b: 3 of 4 non-b cases not called b
    assert pooled["metrics"]["sensitivity_b"]["value"] == pytest.approx(0.5)
    assert pooled["metrics"]["specificity_b"]["value"] == pytest.approx(0.75)
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3],
                      [0.6, 0.3, 0.1]])
    ref = classification_report(np.array([0, 1, 2, 1, 2, 0]), probs, ["a", "b", "c"], n_resamples=0)
    assert pooled["metrics"]["auc"]["value"] == pytest.approx(ref["metrics"]["auc"]["value"])
    bad = _write(tmp_path / "p2.csv", ["case_id", "label", "prediction", "prob_a", "prob_b"], [["z", "a", "a", 1, 0]])
    with pytest.raises(ValueError, match="p2.csv"):
        pool_predictions([f0, bad], n_resamples=0)


def test_pooled_per_case_rows_and_fold_table(tmp_path):
    f0 = _write(tmp_path / "s0.csv", ["case_id", "class", "dice", "nsd"], [["a", "benign", 0.5, 1.0],
                                                                          ["b", "normal", 1.0, 1.0]])
    f1 = _write(tmp_path / "s1.csv", ["case_id", "class", "dice", "nsd"], [["c", "benign", 0.0, 0.4]])
    pooled = pool_per_case([f0, f1], n_resamples=0)
    assert set(pooled) == {"dice", "nsd"}  # the class column is not numeric
    assert pooled["dice"]["mean"] == pytest.approx(0.5) and pooled["dice"]["n"] == 3
    assert pooled["nsd"]["mean"] == pytest.approx(0.8) and pooled["dice"]["std"] == pytest.approx(0.5)
    assert np.isnan(pooled["dice"]["ci_low"])  # no resamples: no interval
    rows = fold_table([{"dice": 0.6, "auc": 0.9}, {"dice": 0.8}])
    assert rows == [{"metric": "dice", "fold0": 0.6, "fold1": 0.8, "mean": pytest.approx(0.7),
                     "sd": pytest.approx(0.2 / np.sqrt(2))}]


def test_flatten_summary_reads_both_report_formats():
    seg = {"dice_lung": {"mean": 0.9, "std": 0.1, "n": 4}, "note": "text"}
    cls = {"n": 6, "class_names": ["a", "b"], "metrics": {"auc": {"value": 0.75, "ci_low": 0.5}},
           "segmentation": {"all": {"dice": {"mean": 0.6}}, "lesion": {"dice": {"mean": 0.4}}}}
    assert flatten_summary(seg) == {"dice_lung": 0.9}
    assert flatten_summary(cls) == {"auc": 0.75, "segmentation/all/dice": 0.6, "segmentation/lesion/dice": 0.4}
