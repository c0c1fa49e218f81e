"""Deterministic (stratified, grouped) k-fold splits of a datalist."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from .errors import DatasetError

__all__ = ["kfold_assignments", "kfold_split"]


def _value(item: Any, key: str, index: int, role: str) -> Hashable:
    try:
        value = item[key]
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"item {index} has no {role} key {key!r}: {item!r}.") from e
    if isinstance(value, list):
        value = tuple(value)
    try:
        hash(value)
    except TypeError as e:
        raise ValueError(f"item {index}: {role} value {value!r} of key {key!r} is not hashable.") from e
    return value


def kfold_assignments(
    datalist: Sequence[Any],
    num_folds: int = 5,
    stratify_key: str | None = None,
    group_key: str | None = None,
    seed: int = 0,
) -> list[int]:
    """The validation fold of every item.

    Items are grouped by ``item[group_key]`` (each item alone without a group key). Within each
    stratum (``item[stratify_key]``; a group's stratum is its most frequent value, ties broken by
    the smallest ``repr``) the groups are shuffled with ``seed`` and, largest first, each goes to
    the fold holding the fewest items of that stratum (then the fewest items overall, then the
    lowest index). Without groups this deals every stratum round-robin, so each fold gets
    ``floor`` or ``ceil`` of its share of every class.

    Args:
        datalist: the items (dicts or other mappings).
        num_folds: number of folds, at least 2 and at most the number of groups (items).
        stratify_key: key of the class to balance across folds, e.g. ``"label"`` or ``"grade"``.
        group_key: key whose items must share a fold, e.g. ``"patient_id"``.
        seed: seed of the shuffle.

    Returns:
        ``folds[i]`` in ``0 .. num_folds - 1`` for item ``i``.

    Raises:
        ValueError: ``num_folds`` < 2 or larger than the number of groups (items), or an item
            without the stratify or group key.
    """
    if isinstance(num_folds, bool) or int(num_folds) != num_folds or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}.")
    num_folds = int(num_folds)
    n = len(datalist)

    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(datalist):
        key = _value(item, group_key, i, "group") if group_key is not None else ("__item__", i)
        groups.setdefault(key, []).append(i)
    if num_folds > len(groups):
        what = f"groups ({group_key!r})" if group_key is not None else "items"
        raise DatasetError(
            f"num_folds={num_folds} exceeds the number of {what}: {len(groups)}; use --num_folds {max(2, len(groups))} "
            "or fewer."
        )

    strata: dict[Hashable, list[list[int]]] = {}
    for members in groups.values():
        if stratify_key is None:
            stratum: Hashable = None
        else:
            counts = Counter(_value(datalist[i], stratify_key, i, "stratify") for i in members)
            top = max(counts.values())
            stratum = min((v for v, c in counts.items() if c == top), key=repr)
        strata.setdefault(stratum, []).append(members)

    rng = np.random.default_rng(seed)
    folds = [-1] * n
    fold_total = [0] * num_folds
    for stratum in sorted(strata, key=repr):
        members_list = strata[stratum]
        order = rng.permutation(len(members_list))
        # largest groups first (stable, so equal sizes keep the shuffled order)
        shuffled = sorted((members_list[j] for j in order), key=len, reverse=True)
        fold_stratum = [0] * num_folds
        for members in shuffled:
            fold = min(range(num_folds), key=lambda f: (fold_stratum[f], fold_total[f], f))
            fold_stratum[fold] += len(members)
            fold_total[fold] += len(members)
            for i in members:
                folds[i] = fold
    return folds


def kfold_split(
    datalist: Sequence[Any],
    num_folds: int = 5,
    fold: int = 0,
    stratify_key: str | None = None,
    group_key: str | None = None,
    seed: int = 0,
) -> tuple[list, list]:
    """Training and validation items of one fold of a deterministic k-fold split.

    See :func:`kfold_assignments` for the assignment: stratified by ``item[stratify_key]`` when
    given, patient-level (all items sharing ``item[group_key]`` in one fold) when given. Over
    ``fold = 0 .. num_folds - 1`` every item is in exactly one validation fold.

    Args:
        datalist: the items.
        num_folds: number of folds (2 .. number of groups or items).
        fold: the validation fold, ``0 <= fold < num_folds``.
        stratify_key: optional key to stratify by, e.g. ``"label"`` or ``"grade"``.
        group_key: optional key to group by, e.g. ``"patient_id"``.
        seed: shuffle seed; the same arguments always give the same split.

    Returns:
        ``(train, val)``: the items (the same objects, in datalist order) outside and inside fold ``fold``.

    Raises:
        ValueError: ``fold`` out of range, a bad ``num_folds``, or a missing key.
    """
    folds = kfold_assignments(datalist, num_folds, stratify_key=stratify_key, group_key=group_key, seed=seed)
    if isinstance(fold, bool) or int(fold) != fold or not 0 <= fold < num_folds:
        raise ValueError(f"fold must be an integer in [0, {num_folds - 1}], got {fold!r}.")
    train = [item for item, f in zip(datalist, folds) if f != fold]
    val = [item for item, f in zip(datalist, folds) if f == fold]
    return train, val
