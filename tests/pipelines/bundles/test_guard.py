"""The bundle commands' guard rails (pipelines.bundles.guards): a misspelled override stops the run naming the closest
key, the project's errors and Ctrl-C end the output with one readable line, the traceback goes to a log file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from pipelines.bundles import ConfigOverrideError, UserFacingError, check_overrides
from pipelines.bundles.guards import _parse_argv, error_line
from pipelines.data import DatasetError, make_brats_demo

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "bundles" / "brats_pam_segmentation" / "configs"
TRAIN_CPU = f"['{CONFIGS / 'train.yaml'}','{CONFIGS / 'cpu.yaml'}']"


def _configs(tmp_path):
    base = tmp_path / "train.yaml"
    base.write_text("epochs: 2\nnetwork_def:\n  features: [1, 2]\nlearning_rate: 0.1\n")
    overlay = tmp_path / "evaluate.yaml"
    overlay.write_text("eval_dir: out\n")
    meta = tmp_path / "metadata.json"
    meta.write_text('{"version": "0.1"}')
    return [str(base), str(overlay)], str(meta)


def test_known_overrides_pass(tmp_path):
    files, meta = _configs(tmp_path)
    # nested keys are checked at their top level only; overlay keys, metadata keys and MONAI's arguments are known
    check_overrides({"epochs": 3, "network_def#features": [2], "network_def#new_arg": 1, "eval_dir": "x",
                     "version": "1", "_meta_#version": "2", "config_file": "a.yaml", "tracking": "mlflow"},
                    files, meta)


def test_misspelled_override_names_closest_key(tmp_path):
    files, meta = _configs(tmp_path)
    with pytest.raises(ConfigOverrideError) as info:
        check_overrides({"epoch": 3, "netwrk_def#features": [2], "zzz": 1}, files, meta)
    msg = str(info.value)
    assert "--epoch: 'epoch' is not a setting of" in msg and "(did you mean --epochs?)" in msg
    assert "(did you mean --network_def#features?)" in msg
    assert "--zzz: 'zzz' is not a setting" in msg and msg.count("did you mean") == 2
    assert files[0] in msg and files[1] in msg
    assert isinstance(info.value, UserFacingError)


def test_argv_parsed_like_fire():
    assert _parse_argv(["--epoch", "3", "--a#b=[1, 2]", "--show-progress", "--seed", "0"]) == {
        "epoch": "3", "a#b": "[1, 2]", "show_progress": "True", "seed": "0"}


def test_error_line_unwraps_monai_errors_and_explains_mismatches(tmp_path):
    try:
        try:
            raise DatasetError("/data/Case1/Case1_t1.nii.gz: missing modality t1")
        except DatasetError as e:
            raise RuntimeError("Failed to evaluate ConfigExpression") from e
    except RuntimeError as wrapped:
        assert error_line(wrapped) == "DatasetError: /data/Case1/Case1_t1.nii.gz: missing modality t1"
    assert error_line(ValueError("a bug")) is None  # not the user's to fix: Python's traceback stays
    assert error_line(KeyboardInterrupt(), "training", "/runs/x") == (
        "Interrupted. Re-run the same command to resume: training continues from its last checkpoint in /runs/x.")
    assert error_line(KeyboardInterrupt(), "inference", "/runs/x").startswith("Interrupted. Re-run the same command")

    class Loader:  # stands in for MONAI's CheckpointLoader: the file comes from its load_path
        load_path = str(tmp_path / "model.pt")

        def __call__(self):
            torch.nn.Linear(3, 2).load_state_dict(torch.nn.Linear(4, 2).state_dict())

    try:
        Loader()()
    except RuntimeError as e:
        line = error_line(e)
    assert line.startswith(f"CheckpointMismatch: {tmp_path / 'model.pt'} does not fit the network (size mismatch for "
                           "weight: copying a param with shape torch.Size([2, 4]) from checkpoint")
    assert "\n" not in line


FLAG_CONFIG = """
imports:
  - $import json
out: null
resume: true
amp: $False
name: demo
net:
  use_cam: true
  widths: [1, 2]
run:
  - $pipelines.bundles.guard('run', None)
  - "$json.dump({'resume': @resume, 'amp': @amp, 'use_cam': @net#use_cam, 'name': @name, 'net': @net},
    open(@out, 'w'))"
"""


@pytest.mark.parametrize("overrides, expected", [
    ({"resume": "false", "amp": "TRUE", "net#use_cam": "False"}, {"resume": False, "amp": True, "use_cam": False}),
    ({"resume": False, "amp": True}, {"resume": False, "amp": True, "use_cam": True}),  # fire's own booleans
    ({}, {"resume": True, "amp": False, "use_cam": True}),
])
def test_true_false_text_overrides_become_booleans(tmp_path, overrides, expected):
    """fire hands ``--resume false`` over as the text 'false' (truthy); the guard makes it the boolean before any
    other setting is resolved, in leaf ids and in the components holding them."""
    import json

    from monai.bundle import run

    config = tmp_path / "flags.yaml"
    config.write_text("imports:\n  - $import pipelines\n" + FLAG_CONFIG.replace("imports:\n", "", 1))
    out = tmp_path / "out.json"
    run(run_id="run", config_file=str(config), out=str(out), name="false-positive", **overrides)
    got = json.loads(out.read_text())
    assert {k: got[k] for k in expected} == expected
    assert got["name"] == "false-positive" and got["net"]["use_cam"] is expected["use_cam"]
    assert got["net"]["widths"] == [1, 2]


def _run(args, env=None, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    env.pop("PIPELINES_DEBUG", None) if "PIPELINES_DEBUG" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240, **kw)


def _last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


def test_typo_stops_training_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    # a missing dataset folder: had the run got as far as the data, this would be a DatasetError instead
    start = time.time()
    proc = _run(["training", "--config_file", TRAIN_CPU, "--epoch", "3", "--dataset_dir", str(tmp_path / "none"),
                 "--output_dir", str(out)], env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode != 0
    last = _last_line(proc.stdout)
    assert last.startswith("ConfigOverrideError: --epoch: 'epoch' is not a setting of"), proc.stdout[-3000:]
    assert "(did you mean --epochs?)" in last and "train.yaml" in last
    assert "Traceback" not in proc.stdout and time.time() - start < 120
    assert not out.exists()
    assert "ConfigOverrideError" in (tmp_path / "cache" / "attention-mis" / "last_error.log").read_text()


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    return make_brats_demo(str(tmp_path_factory.mktemp("brats") / "data"), num_cases=8, shape=(48, 48, 32), seed=3)


def test_dataset_error_is_the_last_line_and_names_the_file(demo_data, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(demo_data, broken)
    case = sorted(p for p in broken.iterdir() if p.is_dir())[0]
    os.remove(case / f"{case.name}_t1ce.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    proc = _run(["training", "--config_file", TRAIN_CPU, "--dataset_dir", str(broken), "--output_dir", str(out)])
    assert proc.returncode != 0
    last = _last_line(proc.stdout)
    assert last.startswith("DatasetError: ") and case.name in last and "t1ce" in last, proc.stdout[-3000:]
    assert last.endswith(f"(full traceback: {out / 'last_error.log'})")
    assert "Traceback" not in proc.stdout
    log = (out / "last_error.log").read_text()
    assert "Traceback" in log and "DatasetError" in log and "Failed to evaluate" in log
    # PIPELINES_DEBUG=1 prints the traceback as well, the one line still last
    debug = _run(["training", "--config_file", TRAIN_CPU, "--dataset_dir", str(broken), "--output_dir", str(out)],
                 env={"PIPELINES_DEBUG": "1"})
    assert "Traceback" in debug.stdout and _last_line(debug.stdout) == last


def test_ctrl_c_stops_training_with_one_resume_line(demo_data, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PIPELINES_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", TRAIN_CPU, "--dataset_dir",
         demo_data, "--output_dir", str(out), "--epochs", "1000"],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        # a shell without job control starts background jobs with SIGINT ignored; the child must see Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    timer = threading.Timer(300, proc.kill)
    timer.start()
    try:
        before, started = [], False
        for line in proc.stdout:
            before.append(line)
            if re.search(r"Epoch\[1\]|Epoch: 2/", line):
                started = True
                break
        assert started and proc.poll() is None, "".join(before)[-3000:]
        proc.send_signal(signal.SIGINT)
        after = proc.stdout.read()
        proc.wait()
    finally:
        timer.cancel()
    assert proc.returncode != 0
    assert _last_line(after) == (f"Interrupted. Re-run the same command to resume: training continues from its last "
                                 f"checkpoint in {out}. (full traceback: {out / 'last_error.log'})"), after[-3000:]
    assert "Traceback" not in after
    assert "KeyboardInterrupt" in (out / "last_error.log").read_text()


def test_summaries_say_where_results_went(tmp_path, capsys):
    from types import SimpleNamespace

    from pipelines.bundles import (
        evaluation_summary,
        inference_summary,
        training_summary,
    )

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "models" / "model.pt").write_bytes(b"x")
    (run / "configs").mkdir()
    for name in ("train.yaml", "evaluate.yaml", "inference.yaml"):
        (run / "configs" / name).write_text("{}")
    evaluator = SimpleNamespace(state=SimpleNamespace(best_metric=0.8125, best_metric_epoch=7))
    lines = training_summary(str(run / "models"), str(run / "logs"), str(run), evaluator)
    assert lines == [
        f"[training] best model: {run / 'models' / 'model.pt'} (best validation 0.8125 at epoch 7)",
        f"[training] TensorBoard: tensorboard --logdir {run / 'logs'}",
        f"[training] evaluate with: python -m monai.bundle run evaluating --config_file "
        f"\"['{run / 'configs' / 'train.yaml'}','{run / 'configs' / 'evaluate.yaml'}']\"",
        f"[training] infer with: python -m monai.bundle run inference --config_file {run / 'configs' / 'inference.yaml'}"
        f" --input_dir <folder>",
    ]
    assert capsys.readouterr().out.splitlines() == lines
    (run / "eval").mkdir()
    (run / "eval" / "metrics.csv").write_text("a\n")
    assert evaluation_summary(str(run / "eval")) == [f"[evaluating] report: {run / 'eval' / 'summary.md'}",
                                                     f"[evaluating] also in {run / 'eval'}: metrics.csv"]
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "predictions.csv").write_text("file,status,error\na.png,ok,\nb.png,error,cannot identify image\nc.png,ok,\n")
    assert inference_summary(str(pred)) == [f"[inference] predictions: {pred} (2 files, 1 failed)"]
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz"):
        (nifti / name).write_bytes(b"0")
    assert inference_summary(str(nifti)) == [f"[inference] predictions: {nifti} (3 files, 0 failed)"]


def test_summaries_print_on_rank_0_only(tmp_path, capsys, monkeypatch):
    """Under torchrun every rank runs the summary entry of the run id; only rank 0 prints (another rank may not see
    rank 0's files yet and would say there is no best model)."""
    import ignite.distributed as idist

    from pipelines.bundles import evaluation_summary

    (tmp_path / "metrics.csv").write_text("a\n")
    monkeypatch.setattr(idist, "get_rank", lambda: 1)
    lines = evaluation_summary(str(tmp_path))
    assert lines and capsys.readouterr().out == ""
    monkeypatch.setattr(idist, "get_rank", lambda: 0)
    assert evaluation_summary(str(tmp_path)) == lines and capsys.readouterr().out.splitlines() == lines
