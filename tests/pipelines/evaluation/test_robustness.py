"""PGD in the [0, 1] image space against a small model trained in the test."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from pipelines.evaluation.robustness import pgd_attack, to_minus_one_one


def _toy_data(n: int, seed: int):
    """Class 0: pixels around 0.48, class 1: around 0.52 (8x8, noise 0.05): separable by the mean."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = (0.48 + 0.04 * labels.float()).view(-1, 1, 1, 1) + 0.05 * torch.randn(n, 1, 8, 8, generator=g)
    return images.clamp(0, 1), labels


class _DictNet(nn.Module):
    """A tiny conv net returning an LA-Net-style dict."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        f = self.bn(self.conv(x))
        return {"logits": self.fc(f.mean(dim=(2, 3))), "mask": torch.sigmoid(f[:, :1])}


def _train(model, images, labels, steps=150):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        out = model(to_minus_one_one(images))
        logits = out["logits"] if isinstance(out, dict) else out
        nn.functional.cross_entropy(logits, labels).backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    return model


def _accuracy(model, images, labels):
    with torch.no_grad():
        out = model(to_minus_one_one(images))
    logits = out["logits"] if isinstance(out, dict) else out
    return (logits.argmax(1) == labels).float().mean().item()


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead on a busy machine
    try:
        train, test = _toy_data(256, 0), _toy_data(128, 1)
        linear = _train(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), *train)
        conv = _train(_DictNet(), *train)
    finally:
        torch.set_num_threads(threads)
    return linear, conv, test


@pytest.mark.parametrize("which", [0, 1])
def test_pgd_stays_in_ball_and_lowers_accuracy(toy, which):
    model, (images, labels) = toy[which], toy[2]
    clean = _accuracy(model, images, labels)
    assert clean > 0.9
    adv = pgd_attack(model, images, labels, seed=0)
    assert adv.shape == images.shape and not adv.requires_grad
    assert (adv - images).abs().max() <= 8 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert _accuracy(model, adv, labels) < clean - 0.4
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_seeded_random_start_and_zero_steps(toy):
    model, (images, labels) = toy[0], toy[2]
    a = pgd_attack(model, images, labels, steps=0, seed=3)
    torch.testing.assert_close(a, pgd_attack(model, images, labels, steps=0, seed=3))
    assert 0 < (a - images).abs().max() <= 8 / 255 + 1e-6
    torch.testing.assert_close(pgd_attack(model, images, labels, steps=0, random_start=False), images)


def test_mode_is_restored_and_range_checked(toy):
    model, (images, labels) = toy[1], toy[2]
    model.train()
    running = model.bn.running_mean.clone()
    pgd_attack(model, images[:4], labels[:4])
    assert model.training
    torch.testing.assert_close(model.bn.running_mean, running)  # ran in eval mode: BN statistics untouched
    model.eval()
    with pytest.raises(ValueError, match=r"\[0, 1\] image space"):
        pgd_attack(model, images * 2 - 1, labels)
    with pytest.raises(ValueError, match="non-negative"):
        pgd_attack(model, images, labels, eps=-1)


def test_pgd_handler_reports_clean_and_attacked_metrics(toy, tmp_path):
    """The evaluator handler attacks each batch (seed + batch index) and reports what the functions give by hand."""
    import json

    from ignite.engine import Engine

    from pipelines.evaluation import PGDRobustnessHandler
    from pipelines.metrics import classification_report

    model, (images, labels) = toy[1], toy[2]
    batches = [(images[:64], labels[:64]), (images[64:], labels[64:])]

    def step(engine, batch):  # what LANetEvalStep returns: network inputs in [-1, 1], labels, probabilities
        x, y = batch
        with torch.no_grad():
            probs = torch.softmax(model(to_minus_one_one(x))["logits"], dim=1)
        return {"image": to_minus_one_one(x), "label": y, "pred": probs}

    engine = Engine(step)
    engine.network = model
    handler = PGDRobustnessHandler(str(tmp_path), class_names=("a", "b"), seed=5)
    handler.attach(engine)
    engine.run(batches)

    clean_probs, adv_probs = [], []
    for k, (x, y) in enumerate(batches):
        adv = pgd_attack(model, x, y, seed=5 + k)
        with torch.no_grad():
            clean_probs.append(torch.softmax(model(to_minus_one_one(x))["logits"], dim=1))
            adv_probs.append(torch.softmax(model(to_minus_one_one(adv))["logits"], dim=1))
    clean = classification_report(labels.numpy(), torch.cat(clean_probs).double().numpy(), n_resamples=0)["metrics"]
    attacked = classification_report(labels.numpy(), torch.cat(adv_probs).double().numpy(), n_resamples=0)["metrics"]
    section = json.loads((tmp_path / "robustness.json").read_text())
    assert section == handler.section
    assert section["n"] == 128 and section["steps"] == 4 and section["eps"] == pytest.approx(8 / 255)
    for key in ("accuracy", "auc"):
        assert section["clean"][key] == pytest.approx(clean[key]["value"])
        assert section["pgd"][key] == pytest.approx(attacked[key]["value"])
    assert section["clean"]["accuracy"] > 0.9 and section["pgd"]["accuracy"] < section["clean"]["accuracy"] - 0.4
    assert engine.state.metrics["pgd_accuracy"] == section["pgd"]["accuracy"]
    assert "| accuracy |" in handler.markdown() and "PGD" in handler.markdown()
    engine.run(batches[:1])  # a second run starts afresh
    assert handler.section["n"] == 64
    with pytest.raises(ValueError, match="non-negative"):
        PGDRobustnessHandler(None, ("a", "b"), steps=-1)
