"""Two CPU processes (gloo) under ``torchrun --nproc_per_node=2`` train a 3D bundle (HVSMR) and a 2D bundle (Montgomery
lung segmentation) with their ``multi_gpu_train.yaml`` overlay on tiny demo data: the first run is killed once it has
written a checkpoint, the second resumes from the newest checkpoint and finishes; one ``model.pt`` (no ``module.``
prefix) is written, and the validation metric the two processes gathered for it equals a single-process evaluation of
that checkpoint from the run folder's own configs (which recorded the overlay and run as one process without
torchrun)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

from pipelines.data import make_hvsmr_demo, make_montgomery_demo

REPO = Path(__file__).resolve().parents[2]
#: float32 TensorBoard scalar against the float64 metric of the evaluation
TOLERANCE = 1e-6
CASES = {
    # bundle: (demo maker, its arguments, the tiny budget's overrides, extra config files before the overlay)
    "hvsmr_segmentation": (
        make_hvsmr_demo, {"num_cases": 4, "shape": (32, 32, 24)},
        {"roi_size": [32, 32, 16], "network_def#features": [4, 8, 16, 32], "batch_size": 1, "sw_batch_size": 2,
         "cache_rate": 1.0},
        [],
    ),
    "cxr_lung_segmentation": (
        make_montgomery_demo, {"num_cases": 8, "size": 64}, {"image_size": 32, "batch_size": 2}, ["cpu.yaml"],
    ),
}


def _command(bundle: str, files: list[str], overrides: dict) -> list[str]:
    configs = REPO / "bundles" / bundle / "configs"
    config_files = str([str(configs / f) for f in files])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "training", "--config_file", config_files, "--meta_file", str(configs / "metadata.json"),
           "--logging_file", str(configs / "logging.conf")]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return cmd


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _epochs_saved(models: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in models.glob("checkpoint_epoch=*.pt")
                  if (m := re.search(r"=(\d+)\.pt$", p.name)))


def _readable_epochs(models: Path) -> list[int]:
    return [e for e in _epochs_saved(models) if _readable(models / f"checkpoint_epoch={e}.pt")]


def _readable(path: Path) -> bool:
    try:
        torch.load(path, weights_only=True)
    except Exception:
        return False
    return True


def _tensorboard_scalars(log_dir: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values.update({e.step: e.value for e in acc.Scalars(tag)})
    return values


@pytest.mark.parametrize("bundle", sorted(CASES))
def test_two_processes_train_resume_and_match_single_process_evaluation(bundle, tmp_path):
    make, demo_args, budget, extra = CASES[bundle]
    data = make(str(tmp_path / "data"), seed=0, **demo_args)
    out = tmp_path / "run"
    models = out / "models"
    overrides = dict(budget, dataset_dir=data, output_dir=str(out), num_folds=2, val_interval=1, num_workers=0, seed=0)
    files = ["train.yaml", *extra, "multi_gpu_train.yaml"]

    start = time.time()
    # 1. a long run, stopped like a preempted job (SIGTERM to torchrun, which stops both ranks) as soon as its first
    # checkpoint is there; SIGKILL after a grace period
    with open(tmp_path / "first.log", "w") as log_file:
        first = subprocess.Popen(_command(bundle, files, dict(overrides, epochs=50)), cwd=REPO, env=_env(),
                                 stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        try:
            # a checkpoint file appears when its writing starts (not atomic): wait until one reads completely, so a
            # signal that cuts the next one still leaves one to resume from (the last two are kept)
            while not _readable_epochs(models) and first.poll() is None and time.time() < deadline:
                time.sleep(0.2)
        finally:
            first.send_signal(signal.SIGTERM)
            try:
                first.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait()
    log = (tmp_path / "first.log").read_text(errors="replace")
    assert _epochs_saved(models), f"no checkpoint written before the deadline:\n{log[-3000:]}"
    saved = _epochs_saved(models)
    time.sleep(3)
    assert _epochs_saved(models) == saved and saved[-1] < 50, "the ranks were not stopped"
    print(f"[{bundle}] stopped after {time.time() - start:.0f} s with epochs {saved} saved")

    # 2. the same command resumes from the newest readable checkpoint (one cut by the signal is skipped) and trains
    # one more epoch
    done = max(_readable_epochs(models))
    second = subprocess.run(_command(bundle, files, dict(overrides, epochs=done + 1)), cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    log = second.stdout.decode(errors="replace")
    assert second.returncode == 0, log[-3000:]
    assert f"resuming from epoch {done} of {done + 1}" in log, log[-3000:]
    assert log.count(f"resuming from epoch {done}") == 1, "only rank 0 logs"
    last = torch.load(models / f"checkpoint_epoch={done + 1}.pt", weights_only=True)
    assert last["trainer"]["iteration"] == (done + 1) * last["trainer"]["epoch_length"]  # one more epoch, not all

    print(f"[{bundle}] resumed run done after {time.time() - start:.0f} s")
    # 3. one model.pt, the plain network's state (loads into the single-process network as it is)
    assert [p.relative_to(out) for p in out.rglob("model.pt")] == [Path("models/model.pt")]
    state = torch.load(models / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    # model.pt is the best validation of both runs: the resumed run's saver knows the stored best score
    # (BestMetricState), so its validation of epoch done + 1 replaced model.pt only if it was better
    distributed = _tensorboard_scalars(out / "logs", "val_mean_dice")
    assert done + 1 in distributed, distributed

    # 4. a single-process evaluation of that checkpoint from the run folder's configs (no torchrun) scores the same
    run_configs = out / "configs"
    # the run folder also holds the overlays, to continue or evaluate it under torchrun
    assert (run_configs / "multi_gpu_train.yaml").is_file() and (run_configs / "multi_gpu_evaluate.yaml").is_file()
    wf = ConfigWorkflow(config_file=[str(run_configs / "train.yaml"), str(run_configs / "evaluate.yaml")],
                        meta_file=str(run_configs / "metadata.json"), logging_file=str(run_configs / "logging.conf"),
                        workflow_type=None, run_id="evaluating")
    wf.initialize()
    wf.run()
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    network = wf.parser.get_parsed_content("network")
    single = float(evaluator.state.metrics["val_mean_dice"])
    wf.finalize()
    assert not isinstance(network, torch.nn.parallel.DistributedDataParallel)
    assert single == pytest.approx(max(distributed.values()), abs=TOLERANCE), distributed
