"""Tests of the deterministic stratified / grouped k-fold split."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipelines.data import DatasetError, kfold_assignments, kfold_split


def _items(labels, groups=None):
    return [
        {"case_id": f"c{i}", "label": lab, **({"patient_id": groups[i]} if groups is not None else {})}
        for i, lab in enumerate(labels)
    ]


def _patients(num_patients=40, seed=0):
    """Patients with 1-4 images each; most patients have one class, some mix two."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(num_patients):
        main = int(rng.integers(3))
        for _ in range(int(rng.integers(1, 5))):
            labels.append(main if rng.random() < 0.8 else 0)
            groups.append(f"{p:08d}")
    return _items(labels, groups)


@pytest.mark.parametrize("num_folds", [2, 3, 5])
def test_folds_partition_the_datalist(num_folds):
    items = _items([i % 3 for i in range(23)])
    seen = []
    for fold in range(num_folds):
        train, val = kfold_split(items, num_folds, fold, stratify_key="label")
        assert len(train) + len(val) == len(items)
        assert {id(x) for x in train}.isdisjoint(id(x) for x in val)
        assert [x for x in items if x in val] == val  # datalist order is kept
        seen += [x["case_id"] for x in val]
    assert sorted(seen) == sorted(x["case_id"] for x in items) and len(seen) == len(set(seen))


def test_stratification_proportions():
    items = _items([0] * 70 + [1] * 30)
    for fold in range(5):
        train, val = kfold_split(items, 5, fold, stratify_key="label")
        assert Counter(x["label"] for x in val) == {0: 14, 1: 6}
        assert Counter(x["label"] for x in train) == {0: 56, 1: 24}
    # uneven: each fold gets floor or ceil of each class's share
    items = _items([0] * 13 + [1] * 7 + ["LGG"] * 3)
    for fold in range(3):
        counts = Counter(x["label"] for x in kfold_split(items, 3, fold, stratify_key="label")[1])
        assert counts[0] in (4, 5) and counts[1] in (2, 3) and counts["LGG"] == 1


def test_unstratified_fold_sizes():
    items = _items([0] * 17)
    sizes = sorted(len(kfold_split(items, 5, f)[1]) for f in range(5))
    assert sizes == [3, 3, 3, 4, 4]


def test_groups_stay_together_and_stratified():
    items = _patients()
    folds = kfold_assignments(items, 5, stratify_key="label", group_key="patient_id")
    by_patient = {}
    for item, fold in zip(items, folds):
        by_patient.setdefault(item["patient_id"], set()).add(fold)
    assert all(len(f) == 1 for f in by_patient.values())  # patient-level split
    for fold in range(5):
        train, val = kfold_split(items, 5, fold, stratify_key="label", group_key="patient_id")
        assert {x["patient_id"] for x in train}.isdisjoint(x["patient_id"] for x in val)
    # folds are balanced in size and roughly in class proportions
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 4
    overall = Counter(x["label"] for x in items)
    for fold in range(5):
        counts = Counter(x["label"] for x, f in zip(items, folds) if f == fold)
        for label, n in overall.items():
            assert abs(counts[label] - n / 5) <= 5


@pytest.mark.parametrize("seed", range(5))
def test_pure_groups_are_balanced_per_class(seed):
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(60):  # every patient has one class and 1-4 images
        label = int(rng.integers(3))
        for _ in range(int(rng.integers(1, 5))):
            labels.append(label)
            groups.append(p)
    items = _items(labels, groups)
    folds = kfold_assignments(items, 4, stratify_key="label", group_key="patient_id", seed=seed)
    overall = Counter(labels)
    for fold in range(4):
        counts = Counter(lab for lab, f in zip(labels, folds) if f == fold)
        assert all(abs(counts[lab] - n / 4) < 4 for lab, n in overall.items())  # less than one largest group


def test_deterministic_and_seeded():
    items = _patients()
    a = kfold_assignments(items, 4, stratify_key="label", group_key="patient_id", seed=3)
    b = kfold_assignments([dict(x) for x in items], 4, stratify_key="label", group_key="patient_id", seed=3)
    c = kfold_assignments(items, 4, stratify_key="label", group_key="patient_id", seed=4)
    assert a == b and a != c
    assert kfold_split(items, 4, 1, seed=7) == kfold_split(items, 4, 1, seed=7)


def test_errors():
    items = _items([0, 1, 0, 1], groups=["a", "a", "b", "b"])
    with pytest.raises(ValueError, match=r"fold must be an integer in \[0, 1\], got 2"):
        kfold_split(items, 2, 2)
    with pytest.raises(ValueError, match="fold must be an integer"):
        kfold_split(items, 2, -1)
    with pytest.raises(ValueError, match="num_folds must be an integer >= 2, got 1"):
        kfold_split(items, 1, 0)
    with pytest.raises(DatasetError, match="num_folds=5 exceeds the number of items: 4; use --num_folds 4 or fewer"):
        kfold_split(items, 5, 0)
    with pytest.raises(DatasetError, match=r"num_folds=3 exceeds the number of groups \('patient_id'\): 2"):
        kfold_split(items, 3, 0, group_key="patient_id")
    with pytest.raises(ValueError, match="item 0 has no stratify key 'grade'"):
        kfold_split(items, 2, 0, stratify_key="grade")
    with pytest.raises(ValueError, match="item 0 has no group key 'patient'"):
        kfold_split(items, 2, 0, group_key="patient")
