"""Latent feature augmentation of minority classes: Gaussian noise, then intra-class MixUp (training only).

The bottleneck augmentor of the joint segmentation + classification network (:mod:`networks.nets.joint_segcls`),
after the BUSI thesis code "Dual_Aug_Net" (Nimalesh, Thesis_Phase_2), whose MixUp step crashed (a missing
import); MixUp: Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018.

Minority classes come from the training split's class frequencies (:func:`minority_classes`): class ``c`` is a
minority class when ``n_c < N / K``, i.e. when its class weight ``N / (K n_c)`` exceeds 1 (BUSI: normal 133 and
malignant 210 of 780 images; benign 437 is the majority).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from monai.transforms import Randomizable

__all__ = ["LatentAugmentor", "class_counts", "minority_classes"]


def class_counts(labels: Sequence[int] | np.ndarray | torch.Tensor, num_classes: int) -> np.ndarray:
    """Number of samples per class.

    Args:
        labels: class indices of the training split, in ``[0, num_classes)``.
        num_classes: number of classes ``K``.

    Returns:
        ``(K,)`` int64 counts.

    Raises:
        ValueError: ``num_classes`` is not positive, no labels, or a label outside ``[0, num_classes)``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got num_classes={num_classes}.")
    arr = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if arr.size == 0:
        raise ValueError("class_counts needs at least one label, got none.")
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"labels must be integer class indices, got {arr[:8].tolist()}...")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= num_classes)]
    if bad.size:
        raise ValueError(f"labels must lie in [0, {num_classes}), got {sorted(set(bad.tolist()))}.")
    return np.bincount(arr, minlength=num_classes).astype(np.int64)


def minority_classes(
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    num_classes: int | None = None,
    counts: Sequence[int] | np.ndarray | None = None,
) -> tuple[int, ...]:
    """The classes rarer than average in a split: ``n_c < N / K``, i.e. class weight ``N / (K n_c) > 1``.

    Give either ``labels`` and ``num_classes``, or ``counts``. BUSI's three classes with counts
    ``(133, 437, 210)`` give ``(0, 2)`` (normal and malignant).

    Args:
        labels: class indices of the training split.
        num_classes: number of classes ``K`` (with ``labels``).
        counts: per-class counts ``(K,)`` instead of the labels.

    Returns:
        the sorted minority class indices (empty when all classes are equally frequent).

    Raises:
        ValueError: both or neither of ``labels`` / ``counts`` given, ``num_classes`` missing, a negative count or
            no samples.
    """
    if (labels is None) == (counts is None):
        raise ValueError("give either labels (with num_classes) or counts, not both or neither.")
    if labels is not None:
        if num_classes is None:
            raise ValueError("minority_classes needs num_classes with labels.")
        n = class_counts(labels, num_classes)
    else:
        n = np.asarray(counts, dtype=np.int64).reshape(-1)
        if n.size == 0 or (n < 0).any() or n.sum() == 0:
            raise ValueError(f"counts must be non-negative with a positive total, got {n.tolist()}.")
    # n_c < N / K  <=>  K n_c < N (exact in integers)
    return tuple(int(c) for c in np.flatnonzero(len(n) * n < n.sum()))


class LatentAugmentor(nn.Module, Randomizable):
    """Noise and intra-class MixUp on the minority-class samples of a batch of features; the identity in eval mode.

    In training mode, with the batch's class labels, for every sample of a minority class:

    1. ``z <- z + noise_std * N(0, 1)`` (element-wise noise);
    2. per minority class ``c`` with at least two samples in the batch: a random permutation ``pi`` of its samples
       and one ``lambda ~ Beta(mixup_alpha, mixup_alpha)``, ``z_i <- lambda z_i + (1 - lambda) z_pi(i)`` (on the noisy
       features; a sample may be paired with itself, as in MixUp's permutation).

    Samples of the other classes are returned unchanged (the same values), and a mixed sample only ever receives
    features of its own class, so its class target stays its class. Without labels (``labels=None``) or in eval
    mode the features are returned as they are, so ``forward(z)`` serves inference and export.

    Randomness: MONAI :class:`~monai.transforms.Randomizable`; :meth:`set_random_state` (or ``seed``) makes the
    draws reproducible. Each call draws ``lambda`` from ``self.R`` and a seed for a ``torch.Generator`` on the
    features' device, which draws the noise and the permutations.

    Args:
        num_classes: number of classes ``K``.
        minority: the minority class indices (e.g. :func:`minority_classes` of the training labels); may be set
            later with :meth:`set_minority_classes` or :meth:`set_class_counts`. Defaults to none (identity).
        noise_std: standard deviation of the Gaussian noise. Defaults to 0.05.
        mixup_alpha: both parameters of the Beta distribution of ``lambda``; 0 switches MixUp off. Defaults to 0.4.
        seed: optional seed of :attr:`R`.

    Raises:
        ValueError: ``num_classes`` not positive, ``noise_std`` or ``mixup_alpha`` negative, a minority class out of
            range.
    """

    def __init__(
        self,
        num_classes: int,
        minority: Sequence[int] = (),
        noise_std: float = 0.05,
        mixup_alpha: float = 0.4,
        seed: int | None = None,
    ) -> None:
        nn.Module.__init__(self)
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got num_classes={num_classes}.")
        if noise_std < 0 or mixup_alpha < 0:
            raise ValueError(f"noise_std and mixup_alpha must be >= 0, got {noise_std} and {mixup_alpha}.")
        self.num_classes = num_classes
        self.noise_std = float(noise_std)
        self.mixup_alpha = float(mixup_alpha)
        #: ``(K,)`` bool, True for the minority classes; saved with the network's state.
        self.register_buffer("minority", torch.zeros(num_classes, dtype=torch.bool))
        self.set_minority_classes(minority)
        self.set_random_state(seed)

    def set_minority_classes(self, classes: Sequence[int]) -> None:
        """Set the minority classes (indices in ``[0, num_classes)``).

        Raises:
            ValueError: an index out of range.
        """
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"minority classes must lie in [0, {self.num_classes}), got {bad}.")
        mask = torch.zeros(self.num_classes, dtype=torch.bool)
        mask[classes] = True
        self.minority.copy_(mask.to(self.minority.device))

    def set_class_counts(self, counts: Sequence[int] | np.ndarray) -> None:
        """Set the minority classes from the training split's per-class counts (see :func:`minority_classes`).

        Raises:
            ValueError: ``counts`` does not have ``num_classes`` entries, or is invalid.
        """
        counts = np.asarray(counts).reshape(-1)
        if counts.size != self.num_classes:
            raise ValueError(f"expected {self.num_classes} class counts, got {counts.tolist()}.")
        self.set_minority_classes(minority_classes(counts=counts))

    def randomize(self, data: None = None) -> None:
        """Draw the seed of this call's ``torch.Generator`` from :attr:`R`."""
        self._generator_seed = int(self.R.randint(0, 2**31 - 1))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            z: features ``(B, C, *spatial)``.
            labels: class indices ``(B,)`` (or ``(B, 1)``) of the batch; None: no augmentation.

        Returns:
            the augmented features in training mode with labels, else ``z`` itself.
        """
        if self.training and labels is not None and not torch.jit.is_scripting():
            return self.augment(z, labels)
        return z

    def augment(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training-mode augmentation of :meth:`forward`, whatever the mode (not compiled by TorchScript: a
        scripted augmentor is the identity).

        Raises:
            ValueError: ``labels`` does not have one entry per sample, or a label is out of range.
        """
        labels = torch.as_tensor(labels, device=z.device).reshape(-1).long()
        if labels.numel() != z.shape[0]:
            raise ValueError(f"LatentAugmentor needs one label per sample: {labels.numel()} labels for {z.shape[0]}.")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.tolist()}.")
        selected = self.minority.to(z.device)[labels]
        if not bool(selected.any()):
            return z
        self.randomize()
        gen = torch.Generator(device=z.device)
        gen.manual_seed(self._generator_seed)
        out = z
        if self.noise_std > 0:
            noise = torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
            where = selected.view([-1] + [1] * (z.ndim - 1))
            out = torch.where(where, z + self.noise_std * noise, z)
        if self.mixup_alpha > 0:
            for c in torch.nonzero(self.minority).flatten().tolist():
                idx = torch.nonzero(labels == c).flatten()
                if idx.numel() < 2:
                    continue
                partner = idx[torch.randperm(idx.numel(), generator=gen, device=z.device)]
                lam = float(self.R.beta(self.mixup_alpha, self.mixup_alpha))
                out = out.index_copy(0, idx, lam * out[idx] + (1.0 - lam) * out[partner])
        return out

    def extra_repr(self) -> str:
        minority = torch.nonzero(self.minority).flatten().tolist()
        return (
            f"num_classes={self.num_classes}, minority={minority}, noise_std={self.noise_std}, "
            f"mixup_alpha={self.mixup_alpha}"
        )
