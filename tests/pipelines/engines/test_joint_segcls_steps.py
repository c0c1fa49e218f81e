"""The joint segmentation + classification iteration pieces on MONAI's engines: the trainer's prepare_batch routes the
labels to the network and the mask + label to the loss; the evaluation step's outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from pipelines.engines import (
    JointSegClsEvalStep,
    JointSegClsPrepareBatch,
    joint_batch_to_device,
)
from pipelines.losses import JointSegClsLoss


class _Recorder(nn.Module):
    """A tiny stand-in network with the joint output that records the labels it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.fc = nn.Linear(1, 3)
        self.seen: list = []

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.seen.append(None if labels is None else labels.clone())
        seg = self.conv(x)
        return {"seg": seg, "logits": self.fc(seg.mean(dim=(2, 3)))}


def _batch(n: int = 4, size: int = 8) -> dict:
    mask = torch.zeros(n, 1, size, size)
    mask[1:, :, 2:5, 2:5] = 1  # item 0 is "normal" (empty mask)
    return {"image": torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(0)), "mask": mask,
            "label": torch.tensor([0, 1, 2, 1]), "case_id": [f"c{i}" for i in range(n)]}


def test_prepare_batch_returns_targets_and_network_kwargs():
    batch = _batch()
    image, target, args, kwargs = JointSegClsPrepareBatch()(batch, torch.device("cpu"))
    assert image.shape == (4, 1, 8, 8) and args == ()
    assert set(target) == {"mask", "label"} and set(kwargs) == {"labels"}
    assert torch.equal(target["label"], torch.tensor([0, 1, 2, 1])) and target["label"].dtype == torch.long
    assert torch.equal(kwargs["labels"], target["label"]) and torch.equal(target["mask"], batch["mask"])


def test_batch_without_mask_names_the_missing_key():
    with pytest.raises(KeyError, match="mask"):
        joint_batch_to_device({"image": torch.zeros(1, 1, 4, 4), "label": torch.tensor([0])}, "cpu")


def test_supervised_trainer_calls_network_with_labels_and_the_joint_loss():
    torch.manual_seed(0)
    net = _Recorder()
    loss = JointSegClsLoss(class_weight=torch.tensor([2.0, 2 / 3, 1.0]))
    batch = _batch()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.0), loss_function=loss,
        prepare_batch=JointSegClsPrepareBatch(), decollate=False,
    )
    trainer.run()
    assert len(net.seen) == 1 and torch.equal(net.seen[0], batch["label"])
    with torch.no_grad():  # lr 0: the weights did not change, so the loss can be recomputed
        expected = loss(net(batch["image"]), batch["mask"], batch["label"])
    assert trainer.state.output["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_eval_step_outputs_probabilities_and_binarised_mask():
    torch.manual_seed(0)
    net = _Recorder()
    batch = _batch()
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[batch], network=net,
        iteration_update=JointSegClsEvalStep(threshold=0.5), decollate=False,
    )
    evaluator.run()
    out = evaluator.state.output
    assert net.seen == [None]  # evaluation never passes labels: no augmentation
    assert not net.training
    with torch.no_grad():
        raw = net(batch["image"])
    torch.testing.assert_close(out["pred"], torch.softmax(raw["logits"], dim=1))
    torch.testing.assert_close(out["seg_prob"], torch.sigmoid(raw["seg"]))
    torch.testing.assert_close(out["seg"], (torch.sigmoid(raw["seg"]) >= 0.5).float())
    assert torch.equal(out["mask"], batch["mask"]) and torch.equal(out["label"], batch["label"])


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.5])
def test_eval_step_rejects_a_threshold_outside_zero_one(threshold):
    with pytest.raises(ValueError, match="threshold"):
        JointSegClsEvalStep(threshold=threshold)
