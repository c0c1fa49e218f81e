"""``python -m pipelines cross-validate``: a 2-fold, 1-epoch run of the cxr_lung_segmentation bundle (cpu.yaml) on
8 Montgomery-layout demo cases; finished folds are skipped; per-fold, pooled out-of-fold and the fold-ensemble
inference overlay. The pooling functions are checked against hand computations on hand-written tables."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from monai.bundle import ConfigWorkflow

from pipelines.cli import main
from pipelines.data import make_montgomery_demo
from pipelines.experiments import cross_validate
from pipelines.experiments.crossval import (
    flatten_summary,
    fold_run_dir,
    fold_table,
    pool_per_case,
    pool_predictions,
    run_checkpoint,
    summarise_cross_validation,
    table_subsets,
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
        with open(run / "cv_fold.json") as f:  # the run folder and final model, relative to the cv folder
            recorded = json.load(f)
        assert recorded["run_dir"] == f"fold{fold}" and recorded["ckpt_path"] == f"fold{fold}/models/model.pt"
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


def _fold(cv_dir, fold: int, rows, lesion_classes=None, **recorded) -> None:
    """A finished fold of a fake cross-validation: eval/segmentation.csv, eval/summary.json, cv_fold.json."""
    ev = cv_dir / f"fold{fold}" / "eval"
    ev.mkdir(parents=True)
    _write(ev / "segmentation.csv", ["case_id", "class", "dice", "hd95"], rows)
    summary = {"metrics": {"auc": {"value": 0.5 + fold / 10}}}
    if lesion_classes is not None:
        summary["segmentation"] = {"lesion_classes": lesion_classes, "all": {}, "lesion": {}}
    (ev / "summary.json").write_text(json.dumps(summary))
    (cv_dir / f"fold{fold}" / "cv_fold.json").write_text(json.dumps(
        {"fold": fold, "num_folds": 2, "metrics": flatten_summary(summary), **recorded}))


def test_pooled_segmentation_is_split_into_lesion_and_all_images(tmp_path):
    """Like one run's report (SegmentationSubsetReportHandler): the pooled out-of-fold segmentation over the lesion
    images (the classes the folds' reports name) and over every image, hand-computed."""
    cv_dir = tmp_path / "cv"
    _fold(cv_dir, 0, [["a", "benign", 0.5, 4.0], ["b", "normal", 1.0, 0.0]], ["benign", "malignant"],
          ckpt_path="fold0/models/model.pt")
    _fold(cv_dir, 1, [["c", "malignant", 0.7, 2.0], ["d", "normal", 0.0, 10.0]], ["benign", "malignant"],
          ckpt_path="fold1/models/model.pt")
    evals = [cv_dir / "fold0" / "eval", cv_dir / "fold1" / "eval"]
    assert table_subsets(evals, "segmentation.csv") == {"lesion": ["benign", "malignant"]}
    assert table_subsets(evals, "metrics.csv") is None  # no section "metrics" with lesion classes
    result = summarise_cross_validation(cv_dir, 2, "busi_joint_segcls", n_resamples=0)
    pooled = result["pooled"]["segmentation.csv"]
    assert set(pooled) == {"all", "lesion"}
    assert pooled["lesion"]["dice"]["n"] == 2 and pooled["lesion"]["dice"]["mean"] == pytest.approx(0.6)
    assert pooled["lesion"]["hd95"]["mean"] == pytest.approx(3.0)
    assert pooled["all"]["dice"]["n"] == 4 and pooled["all"]["dice"]["mean"] == pytest.approx(2.2 / 4)
    assert pooled["all"]["hd95"]["mean"] == pytest.approx(4.0)
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert summary["pooled"]["segmentation.csv"]["lesion"]["dice"]["mean"] == pytest.approx(0.6)
    assert summary["pooled_subsets"] == {"segmentation.csv": {"lesion": ["benign", "malignant"]}}
    md = (cv_dir / "cv_summary.md").read_text()
    assert "| lesion/dice | 0.6000 |" in md and "| all/dice | 0.5500 |" in md and "benign, malignant" in md
    # the folds must agree on the lesion classes
    (cv_dir / "fold1" / "eval" / "summary.json").write_text(json.dumps({"segmentation": {"lesion_classes": ["x"]}}))
    with pytest.raises(ValueError, match="fold1"):
        table_subsets(evals, "segmentation.csv")


def test_pool_per_case_subsets_by_hand(tmp_path):
    f0 = _write(tmp_path / "s0.csv", ["case_id", "class", "dice"], [["a", "benign", 0.5], ["b", "normal", 1.0]])
    f1 = _write(tmp_path / "s1.csv", ["case_id", "class", "dice"], [["c", "benign", 0.0]])
    pooled = pool_per_case([f0, f1], n_resamples=0, subsets={"lesion": ["benign"], "none": ["other"]})
    assert pooled["all"]["dice"]["n"] == 3 and pooled["all"]["dice"]["mean"] == pytest.approx(0.5)
    assert pooled["lesion"]["dice"]["n"] == 2 and pooled["lesion"]["dice"]["mean"] == pytest.approx(0.25)
    assert pooled["none"]["dice"]["n"] == 0 and np.isnan(pooled["none"]["dice"]["mean"])
    no_class = _write(tmp_path / "s2.csv", ["case_id", "dice"], [["e", 1.0]])
    with pytest.raises(ValueError, match="s2.csv"):
        pool_per_case([f0, no_class], n_resamples=0, subsets={"lesion": ["benign"]})


def test_fold_models_are_found_where_the_bundle_puts_them(tmp_path):
    """busi_lanet trains in stages: a fold's run folder is fold<i>/stage2 (stage1.yaml: fold<i>/stage1), and the
    final model is the ckpt_path of that run folder's inference.yaml; single-stage bundles use fold<i> itself."""
    from pipelines.bundles import bundle_root

    fold_dir = tmp_path / "cv" / "fold1"
    lanet = Path(bundle_root("busi_lanet")) / "configs"
    overrides = {"output_dir": str(fold_dir), "fold": 1, "num_folds": 3}
    assert fold_run_dir(lanet, ["train.yaml", "cpu.yaml"], overrides) == fold_dir / "stage2"
    assert fold_run_dir(lanet, ["train.yaml", "stage1.yaml", "cpu.yaml"], overrides) == fold_dir / "stage1"
    joint = Path(bundle_root("busi_joint_segcls")) / "configs"
    assert fold_run_dir(joint, ["train.yaml", "cpu.yaml"], overrides) == fold_dir

    bare = tmp_path / "bare" / "configs"
    bare.mkdir(parents=True)
    (bare / "train.yaml").write_text("output_dir: out\n")
    with pytest.raises(ValueError, match="'mybundle'.*run_bundle_writer"):
        fold_run_dir(bare, ["train.yaml"], {}, bundle="mybundle")

    run = fold_dir / "stage2"
    with pytest.raises(FileNotFoundError, match="busi_lanet.*configs/inference.yaml"):
        run_checkpoint(run, "busi_lanet")
    (run / "configs").mkdir(parents=True)
    (run / "configs" / "inference.yaml").write_text(
        f"imports: ['$import os']\noutput_dir: {str(run)!r}\nckpt_path: \"$os.path.join(@output_dir, 'models', "
        "'model.pt')\"\n")
    with pytest.raises(FileNotFoundError, match="busi_lanet.*model.pt"):
        run_checkpoint(run, "busi_lanet")
    (run / "models").mkdir()
    (run / "models" / "model.pt").write_bytes(b"")
    assert run_checkpoint(run, "busi_lanet") == run / "models" / "model.pt"

    # the summary's fold-ensemble overlay takes each fold's recorded model and names that run folder's inference.yaml
    cv_dir = tmp_path / "cv"
    _fold(cv_dir, 0, [["a", "benign", 0.5, 1.0]], run_dir="fold0/stage2", ckpt_path="fold0/stage2/models/model.pt")
    _fold(cv_dir, 1, [["b", "benign", 0.5, 1.0]], run_dir="fold1/stage2")  # no ckpt_path: read from the run folder
    result = summarise_cross_validation(cv_dir, 2, "busi_lanet", n_resamples=0)
    overlay = yaml.safe_load(Path(result["ensemble"]).read_text())
    assert overlay["ckpt_path"] == [str(cv_dir / "fold0" / "stage2" / "models" / "model.pt"),
                                    str(run / "models" / "model.pt")]
    assert str(cv_dir / "fold0" / "stage2" / "configs" / "inference.yaml") in Path(result["ensemble"]).read_text()
