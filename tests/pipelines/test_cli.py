"""``python -m pipelines``: ``--help`` works for every command, and a misspelled override of the demo's bundle runs
stops before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.bundles import ConfigOverrideError
from pipelines.cli import _fire_argv, run_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["demo", "--help"], ["demo", "--", "--help"]),
        (["sweep", "-h"], ["sweep", "--", "--help"]),
        (["--help"], ["--", "--help"]),
        (["demo", "--epochs", "3"], ["demo", "--epochs", "3"]),
        (["demo", "--", "--help"], ["demo", "--", "--help"]),
    ],
)
def test_help_goes_to_fire(argv, expected):
    assert _fire_argv(argv) == expected


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["lung-boxes", "d", "--overwrite", "false"], ["lung-boxes", "d", "--overwrite", "False"]),
        (["cross-validate", "b", "--evaluate=TRUE", "--num_folds", "3"],
         ["cross-validate", "b", "--evaluate=True", "--num_folds", "3"]),
        (["demo", "true"], ["demo", "true"]),  # a positional value, not an option's
        (["sweep", "p", "--", "--x", "false"], ["sweep", "p", "--", "--x", "false"]),  # fire's own part
    ],
)
def test_true_false_become_fire_booleans(argv, expected):
    assert _fire_argv(argv) == expected


def test_fire_reads_the_rewritten_flags_as_booleans():
    import fire

    got = fire.Fire(lambda **kw: kw, _fire_argv(["--overwrite", "false", "--evaluate=true", "--name", "falsey"]))
    assert got == {"overwrite": False, "evaluate": True, "name": "falsey"}


@pytest.mark.parametrize(
    "command, expected",
    [
        (["demo", "--help"], ["--output_dir", "--data_dir", "--epochs", "--seed", "Generate the BraTS demo data"]),
        (["sweep", "--help"], ["PATH", "Run (or resume) a sweep"]),
        (["--help"], ["demo", "sweep"]),
    ],
)
def test_help_of_every_command(command, expected):
    env = dict(os.environ, PAGER="cat")
    proc = subprocess.run([sys.executable, "-m", "pipelines", *command], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout[-2000:])


def test_run_bundle_refuses_a_misspelled_override(tmp_path):
    # the dataset folder does not exist: reaching the data would raise a DatasetError instead
    with pytest.raises(RuntimeError) as info:
        run_bundle("brats_pam_segmentation", "training", ["train.yaml", "cpu.yaml"], epoch=3,
                   dataset_dir=str(tmp_path / "none"), output_dir=str(tmp_path / "out"))
    cause = info.value.__cause__
    assert isinstance(cause, ConfigOverrideError)
    assert "--epoch: 'epoch' is not a setting of" in str(cause) and "(did you mean --epochs?)" in str(cause)
    assert not (tmp_path / "out").exists()
