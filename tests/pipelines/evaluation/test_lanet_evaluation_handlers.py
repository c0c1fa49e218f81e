"""The LA-Net evaluation as handlers of MONAI's SupervisedEvaluator: report with sections, localisation CSV, PGD,
figures; file contents checked against the metric functions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.engines import SupervisedEvaluator

from pipelines.engines import LANetEvalStep
from pipelines.evaluation import (
    LANetFigureHandler,
    LocalisationReportHandler,
    MetricsReportHandler,
    PGDRobustnessHandler,
)
from pipelines.metrics import (
    ClassificationMetricsHandler,
    MaskLocalisationHandler,
    classification_report,
    mask_dice_iou,
)

SIZE = 32


class _TinyLANet(nn.Module):
    """A small network with LA-Net's outputs and a ``backbone.layer4`` for Grad-CAM."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.layer4 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        f = torch.relu(self.backbone.layer4(x))
        mask = torch.sigmoid(4 * nn.functional.avg_pool2d(x, 8))  # (B, 1, 4, 4): bright regions
        return {"logits": self.fc(f.mean(dim=(2, 3))), "mask": mask}


def _batches():
    g = torch.Generator().manual_seed(0)
    out = []
    for b in range(2):
        image = -torch.ones(3, 1, SIZE, SIZE) + 0.1 * torch.rand(3, 1, SIZE, SIZE, generator=g)
        mask = torch.zeros(3, 1, SIZE, SIZE)
        for i in range(3):
            r, c = 4 + 6 * i, 8 + 4 * b
            image[i, 0, r : r + 12, c : c + 12] = 1.0
            mask[i, 0, r : r + 10, c : c + 14] = 1
        out.append({"image": image, "mask": mask, "has_mask": torch.tensor([1, 0, 1]),
                    "label": torch.tensor([0, 1, b]), "case_id": [f"b{b} ({i})" for i in range(3)]})
    return out


def test_evaluator_handlers_write_the_lanet_report(tmp_path):
    torch.manual_seed(0)
    net = _TinyLANet().eval()
    batches = _batches()
    names = ("benign", "malignant")
    ids = lambda batch: list(batch["case_id"])
    cls = ClassificationMetricsHandler(names, output_transform=lambda o: (o["pred"], o["label"]), case_id_transform=ids,
                                       key="accuracy")
    dice = MaskLocalisationHandler("dice", case_id_transform=ids)
    robust = PGDRobustnessHandler(str(tmp_path), names, steps=2, seed=1)
    loc = LocalisationReportHandler(str(tmp_path), "val_mask_dice")
    figures = LANetFigureHandler(str(tmp_path / "figures"), names, dpi=30)
    report = MetricsReportHandler(str(tmp_path), handler=cls, n_resamples=20, sections=[loc, robust, None])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=batches, network=net, iteration_update=LANetEvalStep(),
        key_val_metric={"val_accuracy": cls}, additional_metrics={"val_mask_dice": dice},
        val_handlers=[robust, loc, figures, report], decollate=False,
    )
    evaluator.run()

    # classification: the probabilities of the network, in batch order, with CIs
    with torch.no_grad():
        probs = torch.cat([torch.softmax(net(b["image"])["logits"], 1) for b in batches]).double().numpy()
    labels = np.concatenate([b["label"].numpy() for b in batches])
    expected = classification_report(labels, probs, names, n_resamples=0)["metrics"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metrics"]["accuracy"]["value"] == pytest.approx(expected["accuracy"]["value"])
    assert summary["metrics"]["auc"]["value"] == pytest.approx(expected["auc"]["value"])
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == [c for b in batches for c in b["case_id"]]
    np.testing.assert_allclose([float(r["prob_malignant"]) for r in rows], probs[:, 1], rtol=1e-6)

    # localisation: images with a mask only, the values of mask_dice_iou
    with torch.no_grad():
        per_image = [mask_dice_iou(net(b["image"])["mask"], b["mask"]) for b in batches]
    want = [(b["case_id"][i], d[i], j[i]) for b, (d, j) in zip(batches, per_image) for i in (0, 2)]
    with open(tmp_path / "localisation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case_id"] for r in rows] == [w[0] for w in want]
    np.testing.assert_allclose([float(r["dice"]) for r in rows], [w[1] for w in want])
    np.testing.assert_allclose([float(r["iou"]) for r in rows], [w[2] for w in want])
    assert 0 < np.mean([w[1] for w in want]) < 1  # neither trivial case
    assert summary["localisation"] == {"n": 4, "threshold": 0.5, "iou": pytest.approx(np.mean([w[2] for w in want])),
                                       "dice": pytest.approx(np.mean([w[1] for w in want]))}
    assert evaluator.state.metrics["val_mask_dice"] == pytest.approx(summary["localisation"]["dice"])

    # robustness: the same clean numbers as the report, the JSON file equals the summary section
    robustness = json.loads((tmp_path / "robustness.json").read_text())
    assert summary["robustness"] == robustness and robustness["n"] == 6 and robustness["steps"] == 2
    assert robustness["clean"]["accuracy"] == pytest.approx(summary["metrics"]["accuracy"]["value"])

    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.index("| accuracy |") < markdown.index("## Localisation") < markdown.index("## PGD robustness")
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == sorted(
        f"b{b}_{i}.png" for b in range(2) for i in range(3))


def test_report_refuses_a_section_attached_after_it(tmp_path):
    from ignite.engine import Engine

    cls = ClassificationMetricsHandler(("a", "b"), output_transform=lambda o: (o["pred"], o["label"]))
    loc = LocalisationReportHandler(str(tmp_path), "m")
    engine = Engine(lambda e, batch: batch)
    cls.attach(engine, "cls")
    MetricsReportHandler(str(tmp_path), handler=cls, n_resamples=0, sections=[loc]).attach(engine)
    loc.attach(engine)
    data = [{"pred": torch.tensor([[0.8, 0.2], [0.3, 0.7]]), "label": torch.tensor([0, 1])}]
    with pytest.raises(RuntimeError, match="attach it before MetricsReportHandler"):
        engine.run(data)


def _figures_on_rank(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    from ignite.engine import Engine

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        engine = Engine(LANetEvalStep())
        engine.network = _TinyLANet().eval()
        engine.state.device = torch.device("cpu")
        handler = LANetFigureHandler(out_dir, ("benign", "malignant"), dpi=30)
        handler.attach(engine)
        engine.run([_batches()[rank]])
        torch.save(handler.written, f"{out_dir}/written{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_figures_of_every_rank_are_written_by_rank_0(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_figures_on_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    written = [torch.load(tmp_path / f"written{rank}.pt") for rank in range(2)]
    assert written[1] == []  # rank 1 computes and sends its images, rank 0 writes them
    assert sorted(p.split("/")[-1] for p in written[0]) == sorted(f"b{b}_{i}.png" for b in range(2) for i in range(3))
    assert len(list(tmp_path.glob("*.png"))) == 6
