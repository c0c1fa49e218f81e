"""Every bundle's model-card example, run as written: CPU preset on the demo data, end to end from the run folder.

Each model card (``bundles/<name>/docs/README.md``) has a section "Quick run on a CPU (demo data)" whose bash block
trains with ``configs/cpu.yaml``, then evaluates, infers and exports from the run folder without repeating any
override. This test runs that block with bash, from a scratch folder that links ``bundles/`` (so the outputs land in
the scratch folder's ``runs/``), adding only a shorter training (``--epochs 1``, and ``--val_interval 1`` so that one
validation selects ``models/model.pt``) to the training commands. Inference loading the checkpoint at all proves that
it used the run's network: the preset's UNet features 8/16/32/64 differ from the defaults.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HEADING = "## Quick run on a CPU (demo data)"
# bundle: (the run folder(s) the block writes, the extra training overrides, the file that lists the inputs)
CASES = {
    "brats_pam_segmentation": (["runs/brats_pam_segmentation"], "--epochs 1 --val_interval 1"),
    "malc_segmentation": (["runs/malc_segmentation"], "--epochs 1 --val_interval 1"),
    "hvsmr_segmentation": (["runs/hvsmr_segmentation"], "--epochs 1 --val_interval 1"),
    "busi_lanet": (["runs/busi_lanet/stage1", "runs/busi_lanet/stage2"], "--epochs 1"),
    "cxr_lung_segmentation": (["runs/cxr_lung_segmentation"], "--epochs 1 --val_interval 1"),
    "cxr_attention_classification": (["runs/cxr_attention_classification"], "--epochs 1"),
    "busi_joint_segcls": (["runs/busi_joint_segcls"], "--epochs 1 --val_interval 1"),
    "busi_detection": (["runs/busi_detection"], "--epochs 1 --val_interval 1"),
}


def readme_block(bundle: str) -> list[str]:
    """The commands of the model card's CPU example (continuation lines joined)."""
    text = (REPO / "bundles" / bundle / "docs" / "README.md").read_text()
    assert HEADING in text, f"{bundle}: the model card has no '{HEADING}' section"
    block = re.search(r"```bash\n(.*?)```", text[text.index(HEADING):], re.S).group(1)
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _concurrent(lines: list[str]) -> str:
    """The block as a bash script in which the commands that only read a finished run (evaluation, inference, export)
    run side by side, one thread each, once the training commands before them are done (the suite's time); training
    commands and variable assignments run in order. Any command's failure fails the script."""
    script, background = [], False
    for line in lines:
        if " run training " in line or re.match(r"^\w+=", line):
            if background:
                script.append('for p in "${pids[@]}"; do wait "$p"; done')
                background = False
            script.append(line)
        else:
            if not background:
                script.append("pids=()")
                background = True
            script.append(f"OMP_NUM_THREADS=1 {line} &\npids+=($!)")
    if background:
        script.append('for p in "${pids[@]}"; do wait "$p"; done')
    return "\n".join(script) + "\n"


def _run_block(bundle: str, workdir: Path) -> list[str]:
    runs, extra = CASES[bundle]
    lines = [f"{line} {extra}" if " run training " in line else line for line in readme_block(bundle)]
    (workdir / "bundles").symlink_to(REPO / "bundles")
    script = "set -euo pipefail\n" + _concurrent(lines)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{bundle} example failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return lines


def _only_the_run_folder(lines: list[str], bundle: str) -> None:
    """Evaluation, inference and export name nothing but the run folder's configs (no override, no source configs)."""
    for line in lines:
        if "monai.bundle" in line and " run training " not in line:
            assert f"bundles/{bundle}" not in line and "$B" not in line and "$L" not in line, line
            options = re.findall(r"--(\w[\w#]*)", line)
            assert set(options) <= {"config_file", "bundle_root"}, line


def _check_export(run: Path) -> torch.jit.ScriptModule:
    scripted = torch.jit.load(str(run / "models" / "model.ts"))
    state = torch.load(run / "models" / "model.pt", map_location="cpu", weights_only=True)
    exported = scripted.state_dict()
    assert set(state) <= set(exported)
    for key, value in state.items():  # the exported network carries the trained weights
        torch.testing.assert_close(exported[key], value)
    return scripted


@pytest.mark.parametrize("bundle", ["brats_pam_segmentation", "malc_segmentation", "hvsmr_segmentation"])
def test_3d_segmentation_readme_example(bundle, tmp_path):
    lines = _run_block(bundle, tmp_path)
    _only_the_run_folder(lines, bundle)
    run = tmp_path / CASES[bundle][0][0]
    assert {p.name for p in (run / "configs").iterdir()} >= {
        "train.yaml", "evaluate.yaml", "inference.yaml", "metadata.json", "logging.conf"}
    inference = ConfigParser.load_config_file(str(run / "configs" / "inference.yaml"))
    assert inference["network_def"]["features"] == [8, 16, 32, 64] and inference["roi_size"] == [48, 48, 32]
    train = ConfigParser.load_config_file(str(run / "configs" / "train.yaml"))
    assert train["epochs"] == 1 and train["roi_size"] == [48, 48, 32]

    # evaluation: one row per validation case, written into the run folder
    parser = ConfigParser()
    parser.read_config([str(run / "configs" / "train.yaml"), str(run / "configs" / "evaluate.yaml")])
    n_val = len(parser.get_parsed_content("eval_datalist"))
    with open(run / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert n_val > 0 and len(rows) == n_val
    assert all(0.0 <= float(row[key]) <= 1.0 for row in rows for key in row if key.startswith("dice_"))
    # inference: one label map per input case, in the run folder
    parser = ConfigParser()
    parser.read_config(str(run / "configs" / "inference.yaml"))
    n_cases = len(parser.get_parsed_content("inference_datalist"))
    predictions = sorted((run / "predictions").glob("*.nii.gz"))
    assert n_cases > 0 and len(predictions) == n_cases
    # export: TorchScript of the trained weights at the run's size
    scripted = _check_export(run)
    channels = 4 if bundle == "brats_pam_segmentation" else 1
    with torch.no_grad():
        out = scripted(torch.randn(1, channels, 48, 48, 32))
    assert out.shape[2:] == (48, 48, 32)


def test_busi_lanet_readme_example(tmp_path):
    lines = _run_block("busi_lanet", tmp_path)
    _only_the_run_folder(lines, "busi_lanet")
    stage1, stage2 = (tmp_path / p for p in CASES["busi_lanet"][0])
    for stage, number in ((stage1, 1), (stage2, 2)):
        train = ConfigParser.load_config_file(str(stage / "configs" / "train.yaml"))
        assert train["stage"] == number and train["image_size"] == 128 and train["epochs"] == 1
        assert (stage / "models" / "model.pt").is_file()
    inference = ConfigParser.load_config_file(str(stage2 / "configs" / "inference.yaml"))
    assert inference["image_size"] == 128
    # evaluation of stage 2's model in its folder
    assert (stage2 / "eval" / "summary.json").is_file() and (stage2 / "eval" / "predictions.csv").is_file()
    # inference: one CSV row per input image, every one predicted
    parser = ConfigParser()
    parser.read_config(str(stage2 / "configs" / "inference.yaml"))
    inputs = [p for p in Path(parser.get_parsed_content("input_dir")).iterdir() if p.suffix == ".png"
              and "_mask" not in p.name]
    with open(stage2 / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(inputs) > 0 and len(rows) == len(inputs)
    assert {row["status"] for row in rows} == {"ok"}
    _check_export(stage2)


def test_cxr_attention_classification_readme_example(tmp_path):
    lines = _run_block("cxr_attention_classification", tmp_path)
    _only_the_run_folder(lines, "cxr_attention_classification")
    run = tmp_path / CASES["cxr_attention_classification"][0][0]
    train = ConfigParser.load_config_file(str(run / "configs" / "train.yaml"))
    assert train["image_size"] == 64 and train["backbone"] == "resnet10" and train["epochs"] == 1
    assert ConfigParser.load_config_file(str(run / "configs" / "inference.yaml"))["image_size"] == 64
    summary = run / "eval" / "summary.json"
    assert summary.is_file() and "localisation" in summary.read_text()
    parser = ConfigParser()
    parser.read_config(str(run / "configs" / "inference.yaml"))
    inputs = [p for p in Path(parser.get_parsed_content("input_dir")).iterdir() if p.suffix == ".png"]
    with open(run / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(inputs) > 0 and len(rows) == len(inputs) and {row["status"] for row in rows} == {"ok"}
    assert len(list((run / "predictions" / "figures").glob("*.png"))) == len(inputs)
    _check_export(run)


def test_cxr_lung_segmentation_readme_example(tmp_path):
    lines = _run_block("cxr_lung_segmentation", tmp_path)
    _only_the_run_folder(lines, "cxr_lung_segmentation")
    run = tmp_path / CASES["cxr_lung_segmentation"][0][0]
    train = ConfigParser.load_config_file(str(run / "configs" / "train.yaml"))
    assert train["epochs"] == 1 and train["image_size"] == 64
    inference = ConfigParser.load_config_file(str(run / "configs" / "inference.yaml"))
    assert inference["image_size"] == 64 and inference["network_def"]["features"] == [8, 16, 32, 64]
    with open(run / "eval" / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) > 0
    # inference: one mask per input image, at the image's own size
    parser = ConfigParser()
    parser.read_config(str(run / "configs" / "inference.yaml"))
    inputs = sorted(Path(parser.get_parsed_content("input_dir")).glob("*.png"))
    with open(run / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(inputs) > 0 and len(rows) == len(inputs) and {row["status"] for row in rows} == {"ok"}
    for path in inputs:
        with Image.open(path) as image, Image.open(run / "predictions" / f"{path.stem}_mask.png") as mask:
            assert mask.size == image.size
    scripted = _check_export(run)
    with torch.no_grad():
        assert scripted(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_busi_joint_segcls_readme_example(tmp_path):
    lines = _run_block("busi_joint_segcls", tmp_path)
    _only_the_run_folder(lines, "busi_joint_segcls")
    run = tmp_path / CASES["busi_joint_segcls"][0][0]
    train = ConfigParser.load_config_file(str(run / "configs" / "train.yaml"))
    assert train["epochs"] == 1 and train["image_size"] == 96 and train["encoder"] == "efficientnet-b0"
    inference = ConfigParser.load_config_file(str(run / "configs" / "inference.yaml"))
    assert inference["image_size"] == 96 and inference["network_def"]["decoder_channels"] == [32, 16, 16, 8, 8]
    summary = run / "eval" / "summary.json"
    assert summary.is_file() and "segmentation" in summary.read_text()
    parser = ConfigParser()
    parser.read_config(str(run / "configs" / "inference.yaml"))
    inputs = sorted(p for p in Path(parser.get_parsed_content("input_dir")).glob("*.png") if "_mask" not in p.name)
    with open(run / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(inputs) > 0 and len(rows) == len(inputs) and {row["status"] for row in rows} == {"ok"}
    for path in inputs:
        with Image.open(path) as image, Image.open(run / "predictions" / f"{path.stem}_mask.png") as mask:
            assert mask.size == image.size
    assert len(list((run / "predictions" / "figures").glob("*.png"))) == len(inputs)
    scripted = _check_export(run)
    with torch.no_grad():
        out = scripted(torch.randn(1, 1, 96, 96))
    assert out["seg"].shape == (1, 1, 96, 96) and out["logits"].shape == (1, 3)


def test_busi_detection_readme_example(tmp_path):
    lines = _run_block("busi_detection", tmp_path)
    _only_the_run_folder(lines, "busi_detection")
    run = tmp_path / CASES["busi_detection"][0][0]
    train = ConfigParser.load_config_file(str(run / "configs" / "train.yaml"))
    assert train["epochs"] == 1 and train["image_size"] == 128 and train["depth"] == 18
    inference = ConfigParser.load_config_file(str(run / "configs" / "inference.yaml"))
    assert inference["image_size"] == 128 and inference["anchor_sizes"] == [16, 32, 64, 128]
    assert inference["network_def"]["block_inplanes"] == [16, 32, 64, 128]
    summary = run / "eval" / "summary.json"
    assert summary.is_file() and "ap50" in summary.read_text()
    with open(run / "predictions" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {row["status"] for row in rows} == {"ok"}
    scripted = _check_export(run)
    with torch.no_grad():
        out = scripted(torch.randn(1, 1, 128, 128))
    assert [tuple(o.shape) for o in out["classification"]] == [(1, 3, 32, 32), (1, 3, 16, 16), (1, 3, 8, 8), (1, 3, 4, 4)]


def test_every_bundle_has_a_readme_example():
    bundles = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/train.yaml"))
    assert bundles == sorted(CASES)
    for bundle in bundles:
        assert (REPO / "bundles" / bundle / "configs" / "cpu.yaml").is_file()
        lines = readme_block(bundle)
        assert any("cpu.yaml" in line and " run training " in line for line in lines), bundle
        assert sum(" run training " in line for line in lines) == len(CASES[bundle][0])
        assert any(" run inference " in line for line in lines) and any(" run evaluating " in line for line in lines)
        assert any(" ckpt_export " in line for line in lines)
