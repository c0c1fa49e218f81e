"""Tests of the NIH ChestX-ray14 demo generator (CSV, files, learnable findings, determinism)."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from demo_helpers import gray
from PIL import Image

from pipelines.data import make_chestxray14_demo


@pytest.fixture(scope="module")
def cxr_root(tmp_path_factory):
    return make_chestxray14_demo(str(tmp_path_factory.mktemp("cxr")), num_patients=24, size=96, seed=0)


def _cxr_rows(root):
    with open(os.path.join(root, "Data_Entry_2017.csv"), newline="") as f:
        return list(csv.reader(f))


def test_chestxray14_csv_and_files(cxr_root):
    with open(os.path.join(cxr_root, "Data_Entry_2017.csv")) as f:
        header = f.readline().rstrip("\n")
    assert header == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
    )
    rows = _cxr_rows(cxr_root)[1:]
    names = [r[0] for r in rows]
    assert sorted(os.listdir(os.path.join(cxr_root, "images"))) == sorted(names)
    per_patient = {}
    for r in rows:
        assert r[0] == f"{int(r[3]):08d}_{int(r[2]):03d}.png"  # Patient ID is an integer, as in the real file
        per_patient.setdefault(r[3], []).append(r[1])
        with Image.open(os.path.join(cxr_root, "images", r[0])) as img:
            assert img.mode == "L" and img.size == (96, 96)
    assert len(per_patient) == 24 and all(2 <= len(v) <= 4 for v in per_patient.values())
    findings = {f for r in rows for f in [r[1]]}
    assert findings == {"No Finding", "Effusion", "Pneumothorax", "Subcutaneous Emphysema", "Effusion|Pneumothorax"}
    never_sick = [p for p, v in per_patient.items() if set(v) == {"No Finding"}]
    assert len(never_sick) >= 6


def test_chestxray14_learnable_findings(cxr_root):
    s = 96
    lungs = np.r_[int(0.12 * s) : int(0.4 * s), int(0.6 * s) : int(0.88 * s)]
    wall = np.r_[int(0.05 * s) : int(0.12 * s), int(0.88 * s) : int(0.95 * s)]
    stats: dict[str, list] = {}
    for r in _cxr_rows(cxr_root)[1:]:
        a = gray(os.path.join(cxr_root, "images", r[0])).astype(float) / 255.0
        basal = a[int(0.6 * s) : int(0.78 * s)][:, lungs].mean()
        apical_dark = (a[int(0.12 * s) : int(0.35 * s)][:, lungs] < 0.08).mean()
        wall_dark = (a[int(0.3 * s) : int(0.85 * s)][:, wall] < 0.35).mean()
        stats.setdefault(r[1], []).append((basal, apical_dark, wall_dark))
    mean = {k: np.mean(v, axis=0) for k, v in stats.items()}
    normal = mean["No Finding"]
    assert mean["Effusion"][0] > normal[0] + 0.03  # opaque lung bases
    assert mean["Pneumothorax"][1] > normal[1] + 0.04  # dark, texture-free apices
    assert mean["Subcutaneous Emphysema"][2] > normal[2] + 0.03  # dark streaks in the chest wall


def test_chestxray14_deterministic(cxr_root, tmp_path):
    root = make_chestxray14_demo(str(tmp_path / "cxr"), num_patients=3, size=96, seed=0)
    for name in os.listdir(os.path.join(root, "images")):
        assert np.array_equal(gray(os.path.join(root, "images", name)), gray(os.path.join(cxr_root, "images", name)))
    assert _cxr_rows(root)[1:] == _cxr_rows(cxr_root)[1 : len(_cxr_rows(root))]
    other = make_chestxray14_demo(str(tmp_path / "other"), num_patients=3, size=96, seed=1)
    assert _cxr_rows(other) != _cxr_rows(root)
