"""The joint segmentation + classification bundle learns on demo data (the issue's acceptance test): trained through
its own configs (train.yaml + cpu.yaml at 64 x 64, 30 epochs) on fold 0 of a 24-image BUSI-like demo set, the best
model by validation macro-F1 is evaluated (train.yaml + evaluate.yaml + cpu.yaml) on an independent demo set of 24
images (8 per class, another data seed), so the checkpoint selection does not flatter the numbers.

Trivial predictors on that test set: the majority class scores macro-F1 1/6 (F1 1/2 for the class it names, 0 for
the others) and the all-background mask lesion Dice 0 (Dice 1/3 over all images: 1 on the normal images only).

Checked with OMP_NUM_THREADS=1 for torch seeds 0, 1, 2 (the bundle's ``seed``): test macro-F1 0.81 / 1.00 / 0.92,
lesion Dice 0.82 / 0.86 / 0.89, Dice over all images 0.88 / 0.90 / 0.92; training about 40-60 s per seed on one
thread of an idle machine. The suite runs seed 0; ``BUSI_JOINT_LEARNING_SEEDS=0,1,2`` runs the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

from pipelines.data import make_busi_demo

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "busi_joint_segcls" / "configs"
SIZE = 64
NUM_PER_CLASS = 8  # 24 images: 16 training and 8 validation images in fold 0; 24 test images
EPOCHS = 30
SEEDS = [int(s) for s in os.environ.get("BUSI_JOINT_LEARNING_SEEDS", "0").split(",")]
# trivial: macro-F1 1/6, lesion Dice 0, all-images Dice 1/3. CPU training is not bitwise reproducible from run to run
# (parallel float reductions), and on 24 test images the macro-F1 of seed 0 (2 threads) spread over 0.43-0.96 in nine
# runs (lesion Dice 0.70-0.89, all-images Dice 0.73-0.88); the F1 bound sits below that spread, at twice the trivial
# score
MIN_F1, MIN_LESION_DICE, MIN_ALL_DICE = 0.35, 0.6, 0.55


def _run(configs, workflow_type: str, **override) -> None:
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / c) for c in configs], meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"), workflow_type=workflow_type, **override,
    )
    wf.initialize()
    wf.run()
    wf.finalize()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("busi_joint_learning")
    train = make_busi_demo(str(base / "train"), num_per_class=NUM_PER_CLASS, size=SIZE, seed=0)
    test = make_busi_demo(str(base / "test"), num_per_class=NUM_PER_CLASS, size=SIZE, seed=100)
    return base, train, test


@pytest.mark.parametrize("seed", SEEDS)
def test_bundle_beats_trivial_predictors_on_unseen_demo_images(demo, seed):
    base, train, test = demo
    out = str(base / f"seed{seed}")
    settings = dict(dataset_dir=train, output_dir=out, image_size=SIZE, epochs=EPOCHS, seed=seed, num_workers=0,
                    val_interval=1, tb_num_images=1)
    _run(("train.yaml", "cpu.yaml"), "train", **settings)
    _run(("train.yaml", "evaluate.yaml", "cpu.yaml"), "eval", n_resamples=20,
         eval_datalist=f"$pipelines.data.busi_datalist({test!r}, include_normal=True)", **settings)
    summary = json.loads((Path(out) / "eval" / "summary.json").read_text())
    assert summary["n"] == 3 * NUM_PER_CLASS
    segmentation = summary["segmentation"]
    assert segmentation["lesion"]["dice"]["n"] == 2 * NUM_PER_CLASS
    f1 = summary["metrics"]["f1_macro"]["value"]
    lesion, every = segmentation["lesion"]["dice"]["mean"], segmentation["all"]["dice"]["mean"]
    assert f1 >= MIN_F1, (seed, f1, lesion, every)
    assert lesion >= MIN_LESION_DICE, (seed, f1, lesion, every)
    assert every >= MIN_ALL_DICE, (seed, f1, lesion, every)
