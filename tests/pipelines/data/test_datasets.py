"""The cache switch (pipelines.data.make_dataset): dataset classes, what is cached where, what is never cached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.transforms import Compose, EnsureTyped, MapTransform, RandomizableTransform

from pipelines.data import DatasetError, DiskCacheDataset, make_dataset, transform_hash
from pipelines.data.datasets import cached_transforms

REPO = Path(__file__).resolve().parents[3]


class CountingLoadd(MapTransform):
    """Deterministic: load a ``.npy`` file, times ``scale``; counts its calls."""

    calls = 0

    def __init__(self, keys, scale: float = 1.0):
        super().__init__(keys)
        self.scale = scale

    def __call__(self, data):
        type(self).calls += 1
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(np.load(d[key]) * self.scale, dtype=torch.float32)
        return d


class RandAddd(RandomizableTransform, MapTransform):
    """Random: add one uniform offset in [0, 1) to ``keys``."""

    def __init__(self, keys):
        RandomizableTransform.__init__(self, prob=1.0)
        MapTransform.__init__(self, keys)
        self.offset = 0.0

    def randomize(self, data=None):
        self.offset = float(self.R.uniform())

    def __call__(self, data):
        self.randomize()
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key] + self.offset
        return d


def chain(scale: float = 1.0, meta: bool = False) -> Compose:
    steps = [CountingLoadd("image", scale=scale)]
    if meta:
        steps.append(EnsureTyped("image", track_meta=True))
    return Compose([*steps, RandAddd("image")]).set_random_state(seed=0)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    items = []
    for i in range(3):
        path = folder / f"case{i}.npy"
        np.save(path, np.full((1, 4, 4), float(i), dtype=np.float32))
        items.append({"image": str(path), "case_id": f"case{i}"})
    return folder, items


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind, cls", [("none", Dataset), ("memory", CacheDataset), ("disk", DiskCacheDataset),
                                       ("MEMORY", CacheDataset)])
def test_each_kind_is_its_monai_class(data, tmp_path, kind, cls):
    _, items = data
    ds = make_dataset(kind, items, chain(), cache_dir=tmp_path / "cache")
    assert type(ds) is cls
    assert len(ds) == 3
    if kind == "disk":
        assert isinstance(ds, PersistentDataset)


def test_bad_kind_and_disk_without_folder_are_refused(data):
    _, items = data
    with pytest.raises(ValueError, match="cache must be one of"):
        make_dataset("ram", items, chain())
    with pytest.raises(ValueError, match="needs a cache_dir"):
        make_dataset("disk", items, chain())


def test_disk_cache_never_inside_the_dataset(data):
    folder, items = data
    with pytest.raises(DatasetError, match="inside the dataset folder"):
        make_dataset("disk", items, chain(), cache_dir=folder / "cache", dataset_dir=folder)
    with pytest.raises(DatasetError, match="case0.npy"):  # no dataset_dir given: the inputs' folder is refused too
        make_dataset("disk", items, chain(), cache_dir=folder / "sub" / "cache")
    assert _files(folder) == {"case0.npy", "case1.npy", "case2.npy"}


def test_disk_cache_files_go_to_cache_dir_and_a_second_epoch_reads_them(data, tmp_path):
    folder, items = data
    cache = tmp_path / "out" / "cache"
    before = _files(folder)
    CountingLoadd.calls = 0
    ds = make_dataset("disk", items, chain(), cache_dir=cache, dataset_dir=folder)
    first = [float(ds[i]["image"][0, 0, 0]) for i in range(3)]
    assert CountingLoadd.calls == 3
    assert len(list(cache.glob("*.pt"))) == 3  # one file per item
    assert _files(folder) == before  # nothing written next to the inputs
    second = [float(ds[i]["image"][0, 0, 0]) for i in range(3)]
    assert CountingLoadd.calls == 3  # the deterministic load was not run again
    # a later run (a new dataset object on the same folder) reads the files too
    again = make_dataset("disk", items, chain(), cache_dir=cache, dataset_dir=folder)
    again[0]
    assert CountingLoadd.calls == 3
    # the random transform still runs on every read: the offsets differ between epochs, the loaded values do not
    for i in range(3):
        assert 0.0 <= first[i] - i < 1.0 and 0.0 <= second[i] - i < 1.0
    assert first != second


def test_memory_cache_loads_once_and_randomness_varies(data):
    _, items = data
    CountingLoadd.calls = 0
    ds = make_dataset("memory", items, chain(), cache_rate=1.0, num_workers=0)
    assert CountingLoadd.calls == 3  # filled when built
    epochs = [[float(ds[i]["image"][0, 0, 0]) for i in range(3)] for _ in range(2)]
    assert CountingLoadd.calls == 3
    assert epochs[0] != epochs[1]
    CountingLoadd.calls = 0
    none = make_dataset("none", items, chain())
    none[0], none[0]
    assert CountingLoadd.calls == 2  # no cache: every read loads


def test_other_transform_settings_get_other_cache_entries(data, tmp_path):
    _, items = data
    cache = tmp_path / "cache"
    one = make_dataset("disk", items[1:2], chain(scale=1.0), cache_dir=cache)[0]
    two = make_dataset("disk", items[1:2], chain(scale=2.0), cache_dir=cache)[0]
    assert len(list(cache.glob("*.pt"))) == 2  # one item, two settings: two entries
    # case1 holds 1.0 and the offsets lie in [0, 1): scale 2 was not served scale 1's entry
    assert 1.0 <= float(one["image"][0, 0, 0]) < 2.0 and 2.0 <= float(two["image"][0, 0, 0]) < 3.0
    CountingLoadd.calls = 0
    make_dataset("disk", items[1:2], chain(scale=2.0), cache_dir=cache)[0]  # the same settings, rebuilt: a hit
    assert CountingLoadd.calls == 0 and len(list(cache.glob("*.pt"))) == 2
    assert transform_hash(cached_transforms(chain(3.0))) == transform_hash(cached_transforms(chain(3.0)))
    assert transform_hash(cached_transforms(chain(3.0))) != transform_hash(cached_transforms(chain(3.0, meta=True)))


def test_disk_cache_gives_back_what_the_memory_cache_gives(data, tmp_path):
    _, items = data
    cache = tmp_path / "cache"
    for meta in (False, True):
        mem = make_dataset("memory", items, chain(meta=meta), num_workers=0)
        make_dataset("disk", items, chain(meta=meta), cache_dir=cache)[1]  # fill
        disk = make_dataset("disk", items, chain(meta=meta), cache_dir=cache)  # read back
        a, b = mem[1], disk[1]
        assert type(a["image"]) is type(b["image"]) is (MetaTensor if meta else torch.Tensor)
        # the loaded values (the offsets in [0, 1) come from each dataset's own random state)
        assert torch.equal(torch.as_tensor(a["image"]).floor(), torch.as_tensor(b["image"]).floor())
        if meta:
            assert torch.equal(a["image"].affine, b["image"].affine)
        assert sorted(a) == sorted(b) == ["case_id", "image"]


def test_cached_head_stops_at_the_first_random_transform():
    head = cached_transforms(chain(meta=True))
    assert [type(t).__name__ for t in head] == ["CountingLoadd", "EnsureTyped"]


def test_transform_hash_is_the_same_in_another_process():
    """A later run (another process, other object ids, another string-hash seed) finds the entries of this one."""
    code = ("from transforms.recipes import segmentation_transforms as s; from pipelines.data.datasets import "
            "cached_transforms as c, transform_hash as h; print(h(c(s('train', roi_size=(8, 8, 8)))).decode())")
    env = dict(os.environ, PYTHONHASHSEED="123", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    from transforms.recipes import segmentation_transforms

    here = transform_hash(cached_transforms(segmentation_transforms("train", roi_size=(8, 8, 8)))).decode()
    assert out.stdout.strip() == here
    assert here != transform_hash(cached_transforms(segmentation_transforms("train", roi_size=(8, 8, 16)))).decode()
