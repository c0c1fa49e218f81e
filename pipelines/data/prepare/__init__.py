"""Dataset preparation: turn a raw download into the folder layout a bundle trains on, once, before training.

One module per dataset: :mod:`.chestxray14` (NIH ChestX-ray14 -> the patient-disjoint, class-balanced
``<task>/{train,val,test}/<class>/`` folders of the chest X-ray classifier). Preparation never writes into the
raw dataset and checks it first (:class:`~pipelines.data.errors.DatasetError` naming the file and the problem).
"""

from __future__ import annotations

from .chestxray14 import (
    CXR_SPLITS,
    plan_chestxray14_split,
    prepare_chestxray14,
    read_data_entry,
)

__all__ = [
    "CXR_SPLITS",
    "plan_chestxray14_split",
    "prepare_chestxray14",
    "read_data_entry",
]
