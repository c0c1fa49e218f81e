"""CAMAttentionTrainStep / CAMAttentionEvalStep in MONAI's SupervisedTrainer and SupervisedEvaluator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from networks.nets import CAMClassifier
from pipelines.engines import (
    CAMAttentionEvalStep,
    CAMAttentionTrainStep,
    cam_features_and_logits,
)
from pipelines.losses import GradCAMAttentionLoss, cam_attention, grad_cam_maps

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(n: int = 8, size: int = 32) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        region = torch.zeros(1, size, size)
        if i % 2:
            region[:, size // 2 :, 4:-4] = 1
        items.append({"image": torch.randn(1, size, size, generator=g), "label": i % 2, "region": region})
    return items


def _net() -> CAMClassifier:
    torch.manual_seed(0)
    return CAMClassifier(2, "resnet10", widen_factor=0.125, no_max_pool=True)


def _trainer(net, step, epochs=1, data=None):
    loader = torch.utils.data.DataLoader(data or _data(), batch_size=4)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=loader, network=net,
        optimizer=torch.optim.SGD(net.parameters(), 1e-3), loss_function=torch.nn.CrossEntropyLoss(),
        iteration_update=step, decollate=False,
    )
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    return trainer, outputs


def test_train_step_loss_is_the_weighted_sum():
    net = _net()
    trainer, outputs = _trainer(net, CAMAttentionTrainStep(0.25, GradCAMAttentionLoss(mode="soft")))
    trainer.run()
    out = outputs[0]
    assert set(out) == {"loss", "ce", "attention", "lambda", "pred", "label"}
    assert out["pred"].shape == (4, 2) and out["lambda"].item() == 0.25
    torch.testing.assert_close(out["loss"], 0.25 * out["ce"] + 0.75 * out["attention"])
    assert 0 < out["attention"].item() < 0.5  # two disease images of four, each at most 1


def test_train_step_attention_matches_the_loss_on_the_batch():
    net = _net()
    batch = {k: (torch.stack([d[k] for d in _data()[:4]]) if k != "label" else torch.tensor([0, 1, 0, 1]))
             for k in ("image", "label", "region")}
    net.train()
    features = net.features(batch["image"])
    expected = GradCAMAttentionLoss()(features, net.classify(features), batch["label"], batch["region"])
    trainer, outputs = _trainer(net, CAMAttentionTrainStep(0.5))
    trainer.run()
    torch.testing.assert_close(outputs[0]["attention"], expected.detach())


def test_ce_only_skips_the_grad_cam(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("Grad-CAM computed with lambda 1")

    monkeypatch.setattr(cam_attention, "grad_cam_maps", fail)
    items = [{"image": d["image"], "label": d["label"]} for d in _data()]  # CE only needs no regions
    trainer, outputs = _trainer(_net(), CAMAttentionTrainStep(1.0), data=items)
    trainer.run()
    assert outputs[0]["attention"].item() == 0.0
    torch.testing.assert_close(outputs[0]["loss"], outputs[0]["ce"])


def test_adaptive_lambda_follows_the_epochs():
    step = CAMAttentionTrainStep("adaptive", adaptive_slope=0.3)
    trainer, outputs = _trainer(_net(), step, epochs=4)
    trainer.run()
    lambdas = [round(o["lambda"].item(), 6) for o in outputs[::2]]  # two iterations per epoch
    assert lambdas == [1.0, 0.7, 0.4, 0.2]


def test_train_step_needs_regions():
    items = [{"image": d["image"], "label": d["label"]} for d in _data()]
    trainer, _ = _trainer(_net(), CAMAttentionTrainStep(0.5), data=items)
    with pytest.raises(ValueError, match="region"):
        trainer.run()
    with pytest.raises(ValueError, match="lambda"):
        CAMAttentionTrainStep(1.5)


def test_eval_step_outputs_and_frozen_weights():
    net = _net().eval()
    for p in net.parameters():  # the eval Grad-CAM runs through the head only and needs no trainable weights
        p.requires_grad_(False)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=torch.utils.data.DataLoader(_data(), batch_size=4),
        network=net, iteration_update=CAMAttentionEvalStep(GradCAMAttentionLoss(mode="hard")), decollate=False,
    )
    evaluator.run()
    out = evaluator.state.output
    assert out["cam"].shape == (4, 1, 32, 32) and out["region"].shape == (4, 1, 32, 32)
    assert out["cam"].min() >= 0 and out["cam"].max() <= 1 and not out["cam"].requires_grad
    torch.testing.assert_close(out["pred"].sum(1), torch.ones(4))
    with torch.no_grad():
        logits = net(out["image"])
    torch.testing.assert_close(out["pred"], torch.softmax(logits, 1))
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, out["label"]))
    # the CAM is the Grad-CAM of the true class at image size
    for p in net.parameters():
        p.requires_grad_(True)
    features, logits = cam_features_and_logits(net, out["image"])
    expected = grad_cam_maps(features, logits, out["label"], create_graph=False, size=(32, 32))
    torch.testing.assert_close(out["cam"][:, 0], expected.detach(), atol=1e-5, rtol=1e-4)
    expected_att = GradCAMAttentionLoss(mode="hard").from_cam(out["cam"], out["region"])
    torch.testing.assert_close(out["attention"], expected_att)


def test_cam_layer_is_required():
    with pytest.raises(ValueError, match="cam_layer"):
        cam_features_and_logits(torch.nn.Linear(2, 2), torch.ones(1, 2))
