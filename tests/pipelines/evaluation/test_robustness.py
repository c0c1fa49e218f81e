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
