"""The cache switch of every bundle: one helper that builds the MONAI dataset of a training or validation split.

A bundle's ``train.yaml`` has a top-level ``cache`` key and builds ``train#dataset`` / ``validate#dataset`` with
:func:`make_dataset`::

    cache: memory          # memory | disk | none
    cache_dir: $@output_dir + '/cache'
    train:
      dataset:
        _target_: pipelines.data.make_dataset
        kind: "@cache"
        data: "@train_datalist"
        transform: "@train#preprocessing"
        cache_rate: "@cache_rate"
        cache_dir: "@cache_dir"
        dataset_dir: "@dataset_dir"
        num_workers: "@num_workers"

* ``memory``: MONAI ``CacheDataset``; the deterministic head of the transform chain (everything up to the first
  random transform) runs once per item, before training, and its output is kept in RAM (``cache_rate`` of the items).
* ``disk``: :class:`DiskCacheDataset`, a MONAI ``PersistentDataset``; the deterministic head runs once per item,
  the first time the item is used, and its output is written to ``cache_dir`` (``.pt`` files), where later epochs
  and later runs read it. The file names hash the item *and* the deterministic transforms
  (:func:`transform_hash`), so runs with other settings (another image size, another normalisation) never read
  each other's entries; changing a transform gives new files (delete ``cache_dir`` to reclaim the space).
* ``none``: MONAI ``Dataset``; every transform runs on every item in every epoch.

Random transforms are never cached: MONAI stops caching at the first randomizable transform, so augmentation
differs from epoch to epoch whatever the switch says.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.transforms import Compose, Transform
from monai.transforms.transform import RandomizableTrait
from monai.utils import enums as monai_enums

from .errors import DatasetError

__all__ = ["CACHE_KINDS", "DiskCacheDataset", "cached_transforms", "make_dataset", "transform_hash"]

#: The values of a bundle's ``cache`` key.
CACHE_KINDS = ("memory", "disk", "none")

# a cached item remembers which of its tensors were plain tensors (the disk format stores every tensor as MetaTensor)
_PLAIN_KEYS = "_cache_plain_tensor_keys"


def _is_cache_stop(t) -> bool:
    """MONAI's rule: caching stops at the first random transform or the first callable that is not a Transform."""
    return isinstance(t, RandomizableTrait) or not isinstance(t, Transform)


def cached_transforms(transform: Callable) -> list:
    """The deterministic head of ``transform`` that MONAI's caching datasets run once and keep: its (flattened)
    transforms up to, not including, the first random transform or the first callable that is not a MONAI
    ``Transform``."""
    steps = transform.flatten().transforms if isinstance(transform, Compose) else [transform]
    head = []
    for t in steps:
        if _is_cache_stop(t):
            break
        head.append(t)
    return head


def _describe(obj, depth: int = 0, seen: frozenset = frozenset()) -> str:
    """A text description of ``obj`` that is stable across processes: class names, settings (attributes, sorted),
    array contents by digest; sets sorted; no ids or addresses."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str)):
        return repr(obj)
    if isinstance(obj, Enum):
        return f"{type(obj).__qualname__}.{obj.name}"
    if isinstance(obj, bytes):
        return "bytes:" + hashlib.sha256(obj).hexdigest()
    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(obj)
        return f"ndarray{a.shape}{a.dtype}:" + hashlib.sha256(a.tobytes()).hexdigest()
    if isinstance(obj, torch.Tensor):
        a = obj.detach().cpu().contiguous()
        return f"tensor{tuple(a.shape)}{a.dtype}:" + hashlib.sha256(a.view(torch.uint8).numpy().tobytes()).hexdigest()
    if isinstance(obj, (torch.dtype, torch.device, np.dtype, type)):
        return str(obj)
    if depth > 8 or id(obj) in seen:
        return type(obj).__qualname__
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_describe(v, depth + 1, seen) for v in obj) + "]"
    if isinstance(obj, (set, frozenset)):
        return "{" + ",".join(sorted(_describe(v, depth + 1, seen) for v in obj)) + "}"
    if isinstance(obj, dict):
        items = sorted((str(k), _describe(v, depth + 1, seen)) for k, v in obj.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if callable(obj) and not hasattr(obj, "__dict__"):
        return name
    if hasattr(obj, "__qualname__") and not isinstance(obj, Transform):  # functions, methods
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    state = getattr(obj, "__dict__", None)
    if state is None:
        return name
    return name + _describe(state, depth + 1, seen)


def transform_hash(transforms: Sequence) -> bytes:
    """Digest of a sequence of transforms and their settings (hex sha256 as bytes), for MONAI
    ``PersistentDataset(hash_transform=...)``: two transform chains that differ in any setting (a size, a mode, a
    normalisation flag) get different digests, the same chain built in another process gets the same one.

    MONAI's own ``json_hashing`` / ``pickle_hashing`` either fall back to the class names only (settings ignored,
    so entries of another image size would be read back) or depend on pickling details; this one describes every
    attribute, recursively.
    """
    return hashlib.sha256(_describe(list(transforms)).encode("utf-8")).hexdigest().encode("utf-8")


def _safe_globals() -> list:
    """The numpy types and MONAI enums that MONAI meta data holds (e.g. ``spatial_shape``, the ``space`` and the
    traced operations), allowed when loading cached items with ``torch.load(weights_only=True)``."""
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    allowed += [v for v in vars(monai_enums).values() if isinstance(v, type) and issubclass(v, Enum)]
    return allowed


class DiskCacheDataset(PersistentDataset):
    """MONAI ``PersistentDataset`` keyed by item and deterministic transforms, that gives back what a
    ``CacheDataset`` would.

    Differences from the MONAI class, each one hook:

    * ``hash_transform`` defaults to :func:`transform_hash` (file names depend on the transform settings);
    * MetaTensors keep their meta data (``track_meta=True``) and plain tensors come back as plain tensors (the
      training recipes drop meta data for faster collation; validation keeps spacing and affine);
    * cached files are read with ``weights_only=True`` and MONAI's numpy meta data allowed, so a warm cache is
      read instead of being rejected as corrupt and recomputed.

    Args:
        data: the datalist (list of dicts).
        transform: the full transform chain (the deterministic head is cached).
        cache_dir: folder of the ``.pt`` files (created if missing).
        hash_transform: digest of the deterministic transforms, appended to every file name.
        kwargs: further ``PersistentDataset`` arguments.
    """

    def __init__(self, data: Sequence, transform: Callable, cache_dir: str | os.PathLike,
                 hash_transform: Callable[..., bytes] | None = transform_hash, **kwargs) -> None:
        kwargs.setdefault("track_meta", True)
        super().__init__(data, transform, cache_dir=cache_dir, hash_transform=hash_transform, **kwargs)

    def _pre_transform(self, item_transformed):
        out = super()._pre_transform(item_transformed)
        if isinstance(out, dict):
            out = dict(out)
            out[_PLAIN_KEYS] = [k for k, v in out.items() if isinstance(v, torch.Tensor)
                                and not isinstance(v, MetaTensor)]
        return out

    def _cachecheck(self, item_transformed):
        with torch.serialization.safe_globals(_safe_globals()):
            return super()._cachecheck(item_transformed)

    def _post_transform(self, item_transformed):
        if isinstance(item_transformed, dict) and _PLAIN_KEYS in item_transformed:
            item = dict(item_transformed)
            for k in item.pop(_PLAIN_KEYS):
                if isinstance(item.get(k), MetaTensor):
                    item[k] = item[k].as_tensor()
            item_transformed = item
        return super()._post_transform(item_transformed)


def _check_cache_dir(cache_dir: Path, data: Sequence, dataset_dir: str | os.PathLike | None) -> None:
    """Refuse a cache folder inside the dataset folder or a folder that holds input files (inputs are never
    written to)."""
    cache = cache_dir.resolve()
    if dataset_dir is not None:
        root = Path(dataset_dir).resolve()
        if cache == root or root in cache.parents:
            raise DatasetError(f"cache_dir {str(cache_dir)!r} lies inside the dataset folder {str(dataset_dir)!r}; "
                               "a run never writes into its inputs: choose a folder outside it (default "
                               "<output_dir>/cache).")
    for i, item in enumerate(data):
        values = item.values() if isinstance(item, dict) else [item]
        for v in values:
            for path in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
                    folder = Path(path).resolve().parent
                    if cache == folder or folder in cache.parents:
                        raise DatasetError(f"cache_dir {str(cache_dir)!r} lies inside the folder of input file "
                                           f"{str(path)!r} (item {i}); choose a folder outside the dataset.")


def make_dataset(
    kind: str,
    data: Sequence,
    transform: Callable,
    cache_rate: float = 1.0,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = 0,
    dataset_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> Dataset:
    """The MONAI dataset of one split for a bundle's ``cache`` setting.

    Args:
        kind: one of :data:`CACHE_KINDS`: ``"memory"`` (``CacheDataset``), ``"disk"`` (:class:`DiskCacheDataset`)
            or ``"none"`` (``Dataset``).
        data: the datalist.
        transform: the split's pre-processing (a MONAI ``Compose``; its deterministic head is what is cached).
        cache_rate: ``memory`` only: fraction of the items cached (the rest are transformed every time).
        cache_dir: ``disk`` only (required): folder of the cache files, outside the dataset folder.
        num_workers: ``memory`` only: threads that fill the cache (``None``: one per CPU; below 1: one).
        dataset_dir: the dataset folder; ``disk`` refuses a ``cache_dir`` inside it.
        progress: ``memory`` only: show a bar while the cache fills.

    Returns:
        the dataset.

    Raises:
        ValueError: for an unknown ``kind`` or a ``disk`` cache without ``cache_dir``.
        DatasetError: for a ``cache_dir`` inside the dataset folder or in the folder of an input file.
    """
    kind = str(kind).lower()
    if kind not in CACHE_KINDS:
        raise ValueError(f"cache must be one of {CACHE_KINDS}, got {kind!r}.")
    if kind == "none":
        return Dataset(data=data, transform=transform)
    if kind == "memory":
        return CacheDataset(data=data, transform=transform, cache_rate=float(cache_rate), num_workers=num_workers,
                            progress=progress)
    if cache_dir is None or str(cache_dir) == "":
        raise ValueError("cache 'disk' needs a cache_dir (e.g. --cache_dir /scratch/cache).")
    cache_dir = Path(cache_dir)
    _check_cache_dir(cache_dir, data, dataset_dir)
    return DiskCacheDataset(data=data, transform=transform, cache_dir=cache_dir)
