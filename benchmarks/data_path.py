"""Epoch time of a bundle's training data path with each cache setting and loader.

The bundle's own training datalist and pre-processing (``train#preprocessing`` of ``train.yaml`` + ``cpu.yaml``,
the BraTS demo by default: load 4 NIfTI modalities and the label, orient, z-score, pad, then a random crop, flips
and a rotation) feed MONAI loaders exactly as in training (``batch_size`` of the config, shuffled, collated); each
batch then goes through a tiny step (one 3D convolution, forward and backward) so a loader that prepares the next
batch while the step runs can show it. Settings, all in one process, one after the other:

- cache ``none`` (MONAI ``Dataset``), ``memory`` (``CacheDataset``: its fill time is reported apart, then an
  epoch), ``disk-cold`` (the first epoch on an empty ``cache_dir``, which writes the cache) and ``disk-warm`` (an
  epoch of a new dataset object on the filled folder, as a later run sees it);
- loader ``DataLoader`` with 0 and 2 worker processes and ``ThreadDataLoader`` (no workers, one batch prepared
  ahead in a thread).

Each line prints the epoch time (the median of ``--epochs`` epochs where the setting allows repeats) and its ratio
against ``none`` with ``DataLoader(num_workers=0)``; the header prints the load average, as other processes skew it.

Usage::

    python benchmarks/data_path.py                                  # BraTS demo, 2 epochs per setting
    python benchmarks/data_path.py --bundle busi_joint_segcls --step network --caches memory
    python benchmarks/data_path.py --dataset_dir /data/MICCAI_BraTS_2018_Data_Training --limit 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LOADERS = ("DataLoader-w0", "DataLoader-w2", "ThreadDataLoader")
CACHES = ("none", "memory", "disk-cold", "disk-warm")


def load_bundle(bundle: str, dataset_dir: str | None, limit: int | None, network: bool = False):
    """The bundle's training datalist, pre-processing, batch size and (``network``) its CPU-preset network
    (train.yaml + cpu.yaml)."""
    from monai.bundle import ConfigParser

    configs = ROOT / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.yaml"), str(configs / "cpu.yaml")])
    if dataset_dir:
        parser["dataset_dir"] = dataset_dir
    data = parser.get_parsed_content("train_datalist")
    if limit:
        data = data[:limit]
    net = parser.get_parsed_content("network_def") if network else None
    return data, parser.get_parsed_content("train#preprocessing"), int(parser.get_parsed_content("batch_size")), net


def make_loader(name: str, dataset, batch_size: int):
    from monai.data import DataLoader, ThreadDataLoader

    if name == "ThreadDataLoader":
        return ThreadDataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    workers = int(name.rsplit("w", 1)[1])
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      persistent_workers=False)


def _tensors(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


def tiny_step(batch, conv: torch.nn.Module | None) -> None:
    """One forward and backward of ``conv`` (a convolution, or the bundle's network with ``--step network``: the
    mean of its outputs stands in for the loss) on the batch's image; ``None``: touch the tensor only."""
    image = batch["image"]
    image = image.as_tensor() if hasattr(image, "as_tensor") else image
    if conv is None:
        float(image.sum())
        return
    conv.zero_grad()
    sum(t.float().mean() for t in _tensors(conv(image)) if t.is_floating_point()).backward()


def epoch(loader, conv) -> float:
    start = time.perf_counter()
    for batch in loader:
        tiny_step(batch, conv)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="brats_pam_segmentation")
    ap.add_argument("--dataset_dir", default=None, help="default: the bundle's demo data")
    ap.add_argument("--limit", type=int, default=None, help="use the first N training items")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per setting (median; disk-cold is one)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    ap.add_argument("--step", choices=("conv", "network", "none"), default="conv",
                    help="per batch: one 3D/2D convolution (default), the bundle's CPU-preset network, or nothing")
    ap.add_argument("--loaders", nargs="+", default=list(LOADERS), choices=LOADERS)
    ap.add_argument("--caches", nargs="+", default=list(CACHES), choices=CACHES)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from monai.utils import set_determinism

    from pipelines.data import make_dataset

    torch.set_num_threads(args.threads)
    data, transform, batch_size, network = load_bundle(args.bundle, args.dataset_dir, args.limit,
                                                       network=args.step == "network")
    channels = int(transform(dict(data[0]))["image"].shape[0])
    spatial_dims = len(transform(dict(data[0]))["image"].shape) - 1
    conv = network.train() if network is not None else None
    if args.step == "conv":
        torch.manual_seed(0)
        conv = (torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d)(channels, 8, 3, padding=1)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"bundle {args.bundle}: {len(data)} training items, batch {batch_size}, torch threads {args.threads}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"step: {args.step}")
    print(f"{'cache':<10} {'loader':<17} {'setup s':>8} {'epoch s':>8} {'ratio':>7}")

    results: dict[tuple[str, str], float] = {}
    baseline = None
    for loader_name in args.loaders:
        for cache in args.caches:
            set_determinism(seed=0)
            setup = 0.0
            tmp = None
            if cache.startswith("disk"):
                tmp = tempfile.mkdtemp(prefix="data_path_cache_")
            try:
                if cache == "disk-warm":  # fill the folder first (not timed), then a new dataset object reads it
                    for _ in make_loader("DataLoader-w0", make_dataset("disk", data, transform, cache_dir=tmp),
                                         batch_size):
                        pass
                start = time.perf_counter()
                kind = "disk" if cache.startswith("disk") else cache
                dataset = make_dataset(kind, data, transform, cache_rate=1.0, cache_dir=tmp, num_workers=1)
                setup = time.perf_counter() - start
                loader = make_loader(loader_name, dataset, batch_size)
                times = [epoch(loader, conv) for _ in range(1 if cache == "disk-cold" else args.epochs)]
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
            t = statistics.median(times)
            results[(cache, loader_name)] = t
            if cache == "none" and loader_name == "DataLoader-w0":
                baseline = t
            ratio = f"{baseline / t:6.2f}x" if baseline else "   n/a"
            print(f"{cache:<10} {loader_name:<17} {setup:8.2f} {t:8.2f} {ratio}", flush=True)
    if baseline:
        best = min(results, key=results.get)
        print("RESULT " + " ".join(f"{c}/{loader}={baseline / t:.2f}x" for (c, loader), t in results.items())
              + f" best={best[0]}/{best[1]} (speed-up of the epoch against none/DataLoader-w0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
