"""pipelines.bundles.run_folder: a training run writes a bundle that evaluation / inference use without its overrides.

A tiny bundle (a ``torch.nn.Linear`` network whose width is a top-level key) is run through MONAI's ``ConfigWorkflow``
exactly as ``python -m monai.bundle run`` does, so these tests cover the writer, the relocation of the paths, the
recorded network settings and their check without training anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from monai.bundle import ConfigParser, ConfigWorkflow

from pipelines.bundles import RunBundleWriter, RunSettingsError, run_bundle_root

TRAIN = {
    "imports": ["$import os", "$import torch", "$import pipelines"],
    "bundle_root": None,  # set per test: the source bundle
    "output_dir": None,  # set per test
    "width": 4,
    "epochs": 10,
    "num_workers": 4,
    "network_def": {"_target_": "torch.nn.Linear", "in_features": "@width", "out_features": 2},
    "run_bundle_writer": {"_target_": "pipelines.bundles.RunBundleWriter", "run_dir": "@output_dir",
                          "bundle_root": "@bundle_root", "relocate": {"output_dir": "."}},
    "training": ["$@run_bundle_writer.write()"],
    "run": ["$@run_bundle_writer#run_dir", "$@run_bundle_writer.write()"],  # '#' is parsed as '::': never shared
}
EVALUATE = {"ckpt_path": "$@output_dir + '/models/model.pt'", "evaluating": ["$@network_def.in_features"]}
INFERENCE = {
    "imports": ["$import os", "$import torch", "$import pipelines"],
    "bundle_root": "$'unused'",
    "output_dir": "$os.path.abspath('runs/tiny')",
    "pred_dir": "$@output_dir + '/predictions'",
    "num_workers": 4,
    "network_def": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2},
    "inference": ["$@network_def.in_features"],
    "run": ["$@network_def.in_features"],
}


def _bundle(root: Path, output_dir: Path) -> Path:
    """Write the tiny source bundle into ``root``; returns its configs folder."""
    configs = root / "configs"
    configs.mkdir(parents=True)
    train = dict(TRAIN, bundle_root=str(root), output_dir=str(output_dir))
    for name, config in (("train.yaml", train), ("evaluate.yaml", EVALUATE), ("inference.yaml", INFERENCE)):
        (configs / name).write_text(yaml.safe_dump(config, sort_keys=False))
    (configs / "metadata.json").write_text(json.dumps({"version": "0.1.0", "name": "tiny"}))
    (configs / "logging.conf").write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=console\n[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=INFO\nhandlers=console\n[handler_console]\nclass=StreamHandler\nlevel=INFO\n"
        "formatter=plain\nargs=(sys.stdout,)\n[formatter_plain]\nformat=%(message)s\n"
    )
    return configs


def _run(config_file, run_id: str, **override) -> ConfigWorkflow:
    files = [str(f) for f in config_file] if isinstance(config_file, (list, tuple)) else str(config_file)
    wf = ConfigWorkflow(config_file=files, workflow_type=None, run_id=run_id, **override)
    wf.initialize()
    wf.result = wf.run()
    return wf


@pytest.fixture
def run_folder(tmp_path):
    """A source bundle trained once with the overrides ``width=5``, ``num_workers=0``: returns the run folder."""
    source = _bundle(tmp_path / "bundle", tmp_path / "runs" / "x")
    _run(source / "train.yaml", "training", width=5, num_workers=0)
    return tmp_path / "runs" / "x"


def test_the_run_folder_holds_a_bundle_with_the_overrides_applied(run_folder):
    configs = run_folder / "configs"
    assert sorted(p.name for p in configs.iterdir()) == [
        "evaluate.yaml", "inference.yaml", "logging.conf", "metadata.json", "train.yaml"]
    train = ConfigParser.load_config_file(str(configs / "train.yaml"))
    assert train["width"] == 5 and train["num_workers"] == 0 and train["epochs"] == 10
    assert train["output_dir"] == "@bundle_root"
    assert train["run_network"] == {"in_features": 5, "out_features": 2}
    assert train["network_def"]["_requires_"] == "@check_run_network"
    inference = ConfigParser.load_config_file(str(configs / "inference.yaml"))
    # the run's network (and the key it refers to), the changed shared setting, the inference-only keys kept
    assert inference["network_def"]["in_features"] == "@width" and inference["width"] == 5
    assert inference["num_workers"] == 0 and inference["pred_dir"] == "$@output_dir + '/predictions'"
    assert "epochs" not in inference  # training-only keys stay out
    assert inference["run"] == INFERENCE["run"] and "training" not in inference  # run ids stay the config's own
    evaluate = ConfigParser.load_config_file(str(configs / "evaluate.yaml"))
    assert evaluate == EVALUATE  # an overlay of the run's train.yaml, unchanged
    assert json.loads((configs / "metadata.json").read_text())["name"] == "tiny"


def test_inference_and_evaluation_from_the_run_folder_use_the_runs_network(run_folder):
    configs = run_folder / "configs"
    wf = _run(configs / "inference.yaml", "inference")
    assert wf.result == [5]
    assert wf.parser.get_parsed_content("output_dir") == str(run_folder.resolve())
    assert wf.parser.get_parsed_content("pred_dir") == str(run_folder.resolve()) + "/predictions"
    wf = _run([configs / "train.yaml", configs / "evaluate.yaml"], "evaluating")
    assert wf.result == [5]
    assert wf.parser.get_parsed_content("ckpt_path") == str(run_folder.resolve()) + "/models/model.pt"
    # settings that do not define the network may still be changed
    assert _run(configs / "inference.yaml", "inference", num_workers=2).result == [5]


def test_a_copied_run_folder_points_at_itself(run_folder, tmp_path):
    copy = tmp_path / "elsewhere" / "shared_run"
    shutil.copytree(run_folder, copy)
    shutil.rmtree(run_folder)
    wf = _run(copy / "configs" / "inference.yaml", "inference")
    assert wf.parser.get_parsed_content("output_dir") == str(copy.resolve())
    # training from the run folder itself rewrites nothing
    before = (copy / "configs" / "train.yaml").read_text()
    _run(copy / "configs" / "train.yaml", "training")
    assert (copy / "configs" / "train.yaml").read_text() == before
    assert not run_folder.exists()


@pytest.mark.parametrize("override,message", [
    ({"width": 6}, "network_def#in_features: 5 -> 6."),
    ({"network_def#out_features": 3}, "network_def#out_features: 2 -> 3."),
    ({"network_def#bias": False}, "network_def#bias: (not set) -> False."),
])
def test_a_conflicting_network_setting_is_a_clear_error(run_folder, override, message):
    with pytest.raises(Exception) as info:
        _run(run_folder / "configs" / "inference.yaml", "inference", **override)
    error = info.value
    while not isinstance(error, RunSettingsError) and error.__cause__ is not None:  # MONAI wraps expression errors
        error = error.__cause__
    assert isinstance(error, RunSettingsError), info.value
    assert message in str(error) and "train a new run (--output_dir)" in str(error)
    assert str(run_folder.resolve()) in str(error)


def test_check_run_settings_compares_with_the_running_config():
    parser = ConfigParser({"dims": 3, "network_def": {"_target_": "torch.nn.Identity", "dims": "@dims"},
                           "check": "$pipelines.bundles.check_run_settings({'dims': 3}, 'runs/x')",
                           "imports": ["$import pipelines"]})
    assert parser.get_parsed_content("check") is True
    parser["dims"] = 2
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("check", lazy=False)
    assert "run folder runs/x holds a model trained with other network settings (trained -> now): " \
        "network_def#dims: 3 -> 2." in str(info.value.__cause__)


def test_without_a_workflow_the_recorded_folder_is_used_and_nothing_is_written(tmp_path):
    assert run_bundle_root("/recorded/run") == "/recorded/run"
    writer = RunBundleWriter(str(tmp_path / "run"), str(tmp_path))
    assert writer.write() is None and not (tmp_path / "run").exists()
