"""Tests of the cached demo datasets (demo_root, ensure_demo_dataset: markers, locking, regeneration)."""

from __future__ import annotations

import functools
import json
import os
import time

import pytest

from pipelines.data import DEMO_MARKER, demo, demo_root, ensure_demo_dataset


def test_demo_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_DEMO_DIR", str(tmp_path))
    assert demo_root() == str(tmp_path)
    monkeypatch.delenv("PIPELINES_DEMO_DIR")
    assert demo_root() == os.path.expanduser(os.path.join("~", ".cache", "attention-mis", "demo"))


@pytest.fixture
def counted(monkeypatch):
    calls = []
    original = demo.DEMO_DATASETS["busi"]

    @functools.wraps(original)
    def wrapper(root, **kwargs):
        calls.append(kwargs)
        return original(root, **kwargs)

    monkeypatch.setitem(demo.DEMO_DATASETS, "busi", wrapper)
    return calls


def test_ensure_demo_dataset_caches_and_regenerates(counted, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINES_DEMO_DIR", str(tmp_path))
    root = ensure_demo_dataset("busi", num_per_class=2, size=48)
    assert root == str(tmp_path / "busi") and len(counted) == 1
    marker = json.loads((tmp_path / "busi" / DEMO_MARKER).read_text())
    assert marker["kwargs"] == {"num_per_class": 2, "size": 48, "seed": 0, "include_normal": True}

    image = tmp_path / "busi" / "benign" / "benign (1).png"
    stamp = image.stat().st_mtime_ns
    # the same arguments, defaults spelled out or not: a no-op
    assert ensure_demo_dataset("busi", num_per_class=2, size=48, seed=0) == root
    assert len(counted) == 1 and image.stat().st_mtime_ns == stamp

    # the marker removed (e.g. an interrupted run): regenerated
    os.remove(tmp_path / "busi" / DEMO_MARKER)
    ensure_demo_dataset("busi", num_per_class=2, size=48)
    assert len(counted) == 2 and (tmp_path / "busi" / DEMO_MARKER).exists()

    # other arguments: regenerated from scratch, no stale files left
    ensure_demo_dataset("busi", num_per_class=1, size=48, include_normal=False)
    assert len(counted) == 3
    assert sorted(os.listdir(tmp_path / "busi")) == [DEMO_MARKER, "benign", "malignant"]
    assert not (tmp_path / "busi" / "benign" / "benign (2).png").exists()


def test_ensure_demo_dataset_after_interruption(monkeypatch, tmp_path):
    def broken(root, **kwargs):
        os.makedirs(os.path.join(root, "benign"))
        open(os.path.join(root, "benign", "stale.png"), "w").close()
        raise KeyboardInterrupt

    root = str(tmp_path / "data")
    with monkeypatch.context() as m:
        m.setitem(demo.DEMO_DATASETS, "busi", broken)
        with pytest.raises(KeyboardInterrupt):
            ensure_demo_dataset("busi", root=root, num_per_class=1, size=48)
    assert not os.path.exists(os.path.join(root, DEMO_MARKER))
    ensure_demo_dataset("busi", root=root, num_per_class=1, size=48)
    assert os.path.exists(os.path.join(root, DEMO_MARKER))
    assert sorted(os.listdir(os.path.join(root, "benign"))) == ["benign (1).png", "benign (1)_mask.png"]


def test_ensure_demo_dataset_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown demo dataset 'lidc'"):
        ensure_demo_dataset("lidc", root=str(tmp_path))
    with pytest.raises(ValueError, match="bad arguments for demo dataset 'brats'"):
        ensure_demo_dataset("brats", root=str(tmp_path), num_patients=3)


@pytest.mark.parametrize("name", ["brats", "malc", "hvsmr", "busi", "chestxray14"])
def test_default_generation_is_fast(name, tmp_path):
    start = time.perf_counter()
    root = ensure_demo_dataset(name, root=str(tmp_path / name))
    assert time.perf_counter() - start < 10.0
    assert os.path.exists(os.path.join(root, DEMO_MARKER))
