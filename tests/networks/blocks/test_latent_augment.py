"""Latent Augmentor: minority classes from counts, which samples change, intra-class mixing, eval identity, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from networks.blocks.latent_augment import (
    LatentAugmentor,
    class_counts,
    minority_classes,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# BUSI: normal 133, benign 437, malignant 210
BUSI_COUNTS = (133, 437, 210)
LABELS = torch.tensor([1, 0, 1, 2, 0, 2, 0])


def _constant_features(values, channels=3, size=4) -> torch.Tensor:
    """Sample ``i`` filled with ``values[i]``."""
    v = torch.as_tensor(values, dtype=torch.float32)
    return v.view(-1, 1, 1, 1).expand(-1, channels, size, size).clone()


def test_minority_classes_from_counts_and_labels():
    assert minority_classes(counts=BUSI_COUNTS) == (0, 2)
    # N = 6, K = 3, N / K = 2: counts (1, 3, 2) -> only class 0 is below the mean (class 2 equals it)
    assert minority_classes([0, 1, 1, 1, 2, 2], num_classes=3) == (0,)
    assert minority_classes(counts=(5, 5, 5)) == ()
    assert minority_classes([1, 1, 2], num_classes=4) == (0, 3)  # absent classes are minorities
    assert class_counts(torch.tensor([2, 0, 2]), 4).tolist() == [1, 0, 2, 0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "either labels"),
        ({"labels": [0], "counts": [1]}, "either labels"),
        ({"labels": [0, 1]}, "num_classes"),
        ({"labels": [0, 3], "num_classes": 3}, r"\[0, 3\)"),
        ({"labels": [], "num_classes": 3}, "at least one label"),
        ({"labels": [0.5], "num_classes": 3}, "integer"),
        ({"counts": [0, 0]}, "positive total"),
        ({"counts": [3, -1]}, "non-negative"),
    ],
)
def test_minority_classes_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        minority_classes(**kwargs)


def test_only_minority_samples_change():
    torch.manual_seed(0)
    aug = LatentAugmentor(3, minority_classes(counts=BUSI_COUNTS), seed=0).train()
    z = torch.randn(7, 4, 5, 5)
    out = aug(z, LABELS)
    majority = LABELS == 1
    assert torch.equal(out[majority], z[majority])
    assert (out[~majority] - z[~majority]).abs().amax(dim=(1, 2, 3)).min() > 0


def test_noise_only_has_the_requested_std():
    aug = LatentAugmentor(3, (0, 2), noise_std=0.05, mixup_alpha=0.0, seed=1).train()
    z = torch.zeros(4, 64, 16, 16)
    out = aug(z, torch.tensor([0, 1, 2, 2]))
    assert torch.equal(out[1], z[1])
    noise = out[[0, 2, 3]]
    assert abs(float(noise.std()) - 0.05) < 0.002 and abs(float(noise.mean())) < 0.002


@pytest.mark.parametrize("seed", range(5))
def test_mixing_stays_within_each_class(seed):
    # class 0: values 1, 2, 3; class 2: 10, 20; class 1 (majority): 100 -> disjoint ranges
    labels = torch.tensor([0, 2, 0, 1, 2, 0])
    values = torch.tensor([1.0, 10.0, 2.0, 100.0, 20.0, 3.0])
    aug = LatentAugmentor(3, (0, 2), noise_std=0.0, seed=seed).train()
    out = aug(_constant_features(values), labels)
    per_sample = out[:, 0, 0, 0]
    assert torch.equal(out, per_sample.view(-1, 1, 1, 1).expand_as(out))  # still constant per sample
    for c, (lo, hi) in {0: (1.0, 3.0), 2: (10.0, 20.0), 1: (100.0, 100.0)}.items():
        got = per_sample[labels == c]
        assert got.min() >= lo - 1e-5 and got.max() <= hi + 1e-5, (c, got)
        # a permutation with one lambda per class keeps the class's sum
        assert float(got.sum()) == pytest.approx(float(values[labels == c].sum()), rel=1e-6)


def test_mixing_happens_and_lambda_follows_beta():
    """Two samples 0 and 1 of a minority class: swapped, they become ``1 - lambda`` and ``lambda``."""
    aug = LatentAugmentor(2, (0,), noise_std=0.0, mixup_alpha=0.4, seed=3).train()
    z = _constant_features([0.0, 1.0], channels=1, size=1)
    lambdas = []
    for _ in range(600):
        o = aug(z, torch.tensor([0, 0]))[:, 0, 0, 0]
        assert float(o.sum()) == pytest.approx(1.0, abs=1e-6)
        if float(o[0]) != 0.0 or float(o[1]) != 1.0:  # the permutation swapped them
            lambdas.append(float(o[1]))
    lam = np.asarray(lambdas)
    assert 200 < lam.size < 400  # half the permutations of two samples swap them
    # Beta(0.4, 0.4): mean 1/2, variance a^2 / ((2a)^2 (2a + 1)) = 0.16 / (0.64 * 1.8) = 0.1389
    assert abs(lam.mean() - 0.5) < 0.05 and abs(lam.var() - 0.1389) < 0.02


def test_identity_in_eval_and_without_labels():
    aug = LatentAugmentor(3, (0, 2), seed=0)
    z = torch.randn(7, 2, 3, 3)
    assert aug.eval()(z, LABELS) is z
    assert aug.train()(z) is z
    assert aug(z, torch.tensor([1] * 7)) is z  # no minority sample in the batch


def test_seeded_results_reproduce():
    z = torch.randn(7, 4, 3, 3)
    a = LatentAugmentor(3, (0, 2), seed=42).train()
    b = LatentAugmentor(3, (0, 2), seed=42).train()
    first = [a(z, LABELS) for _ in range(3)]
    assert all(torch.equal(x, b(z, LABELS)) for x in first)
    a.set_random_state(42)
    assert torch.equal(a(z, LABELS), first[0])
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(LatentAugmentor(3, (0, 2), seed=43).train()(z, LABELS), first[0])


def test_gradient_reaches_every_feature():
    aug = LatentAugmentor(3, (0, 2), seed=0).train()
    z = torch.randn(7, 2, 3, 3, requires_grad=True)
    aug(z, LABELS).sum().backward()
    # noise is additive and each class's mixing keeps its sum: d(sum)/dz = 1 everywhere
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_three_dimensional_features():
    aug = LatentAugmentor(3, (0,), noise_std=0.0, seed=0).train()
    z = _constant_features([1.0, 5.0, 7.0], channels=2, size=2).unsqueeze(-1).expand(-1, -1, -1, -1, 3)
    out = aug(z, torch.tensor([0, 0, 1]))
    assert out.shape == z.shape and torch.equal(out[2], z[2])
    assert float(out[:2].sum()) == pytest.approx(float(z[:2].sum()))


def test_minority_setters_and_state():
    aug = LatentAugmentor(3)
    assert aug.minority.tolist() == [False, False, False]
    aug.set_class_counts(BUSI_COUNTS)
    assert aug.minority.tolist() == [True, False, True]
    assert "minority" in aug.state_dict()
    other = LatentAugmentor(3)
    other.load_state_dict(aug.state_dict())
    assert other.minority.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="3 class counts"):
        aug.set_class_counts((1, 2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        aug.set_minority_classes([3])


def test_bad_labels_and_arguments():
    aug = LatentAugmentor(3, (0,)).train()
    with pytest.raises(ValueError, match="one label per sample"):
        aug(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        aug(torch.zeros(2, 1, 2, 2), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="num_classes"):
        LatentAugmentor(0)
    with pytest.raises(ValueError, match=">= 0"):
        LatentAugmentor(3, noise_std=-1.0)


def test_scripted_augmentor_is_the_identity():
    aug = LatentAugmentor(3, (0, 2), seed=0).train()
    scripted = torch.jit.script(aug)
    z = torch.randn(7, 2, 3, 3)
    assert torch.equal(scripted(z, LABELS), z)
