"""Training-step time of the BraTS PAM UNet and LA-Net: eager float32 against the bundles' fast path.

Two copies of each network, built from the same seed in one process and trained on the same seeded batch:

- ``eager``: float32, contiguous tensors: how the bundles trained before the fast path;
- ``fast``: the bundles' fast path (:mod:`pipelines.engines.precision`): channels-last weights and activations
  (``prepare_network(channels_last=True)`` + ``AutocastInferer(channels_last=True)``, instance norms that keep the
  layout) and, with ``--precision auto``, autocast as ``amp`` resolves it on the device: float16 with a
  ``GradScaler`` on CUDA, bfloat16 on a CPU with AVX512-BF16 / AMX, float32 on any other CPU (bfloat16 there runs
  oneDNN's reference kernels: one BraTS step took 205 s against 3.0 s in float32 on a 2-core AVX2 EPYC).
  ``--precision float32`` / ``bf16`` force one.

A step is ``zero_grad``, forward (under autocast), the bundle's loss (``DiceBCELoss`` for BraTS, ``LANetJointLoss``
for LA-Net, on float32 outputs), ``backward`` and ``Adam.step`` (lr 1e-3). After ``--warmup`` untimed steps per variant the two alternate
step by step for ``--steps`` rounds, so they see the same machine load. Printed: fastest and median step time, the
speed-up (fastest eager / fastest fast), and the loss of both after the last step with its relative difference,
against a tolerance of 1e-3 in float32 and 5e-2 with reduced precision (the same batch every step, so the loss
falls and any drift between the two shows).

Usage::

    python benchmarks/training_step.py                          # CPU, 2 threads, both networks
    python benchmarks/training_step.py --model brats --size 96 96 64 --steps 3
    python benchmarks/training_step.py --device cuda --steps 20 --size 128 128 96
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = {"float32": 1e-3, "reduced": 5e-2}


def _brats(args: argparse.Namespace, device: torch.device):
    """The BraTS bundle's network (widths 16...128) and loss, and a seeded batch whose labels follow the image."""
    import networks
    from pipelines.losses import DiceBCELoss

    size = tuple(args.size)
    net = networks.build_segmentation_network(
        backbone="unet", attention="pam", spatial_dims=3, in_channels=4, out_channels=3,
        features=(16, 32, 64, 128), patch_size=size, slice_axis=-1,
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool3d(torch.randn(args.batch, 4, *size, generator=gen), 5, 1, 2)
    y = torch.stack([x[:, 0] > 0.1, x[:, 1] > 0.0, x[:, 2] > 0.2], dim=1).float()
    loss = DiceBCELoss()

    def step_loss(model, inputs):
        return loss(model(inputs).float(), y.to(device))

    return net, x.to(device), step_loss


def _lanet(args: argparse.Namespace, device: torch.device):
    """The busi_lanet bundle's LA-Net (ResNet18, CAM + SAM, 3 classes, 1 channel) and joint loss, seeded batch."""
    from networks.nets.lanet import LANet, split_outputs
    from pipelines.losses import LANetJointLoss

    net = LANet(num_classes=3, backbone="resnet18", spatial_dims=2, in_channels=1)
    gen = torch.Generator().manual_seed(0)
    n = args.image_size
    x = torch.randn(args.lanet_batch, 1, n, n, generator=gen)
    labels = torch.arange(args.lanet_batch) % 3
    grid = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")).float()
    gt = torch.zeros(args.lanet_batch, 1, n, n)
    for i in range(args.lanet_batch):
        if labels[i] > 0:
            gt[i, 0] = ((grid - n / 2).square().sum(0) < (n / 6) ** 2).float()
            x[i] += gt[i] * (1.0 + labels[i])
    has_mask = torch.ones(args.lanet_batch)
    loss = LANetJointLoss()

    def step_loss(model, inputs):
        logits, mask = split_outputs(model(inputs))
        return loss(logits.float(), mask.float(), labels.to(device), gt.to(device), has_mask.to(device))

    return net, x.to(device), step_loss


def _dtype(precision: str, device: torch.device):
    from pipelines.engines.precision import autocast_dtype

    if precision == "float32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return autocast_dtype(device, True)  # auto: what the bundles' --amp true gives on this device


class _Runner:
    """One variant: its network, optimiser, autocast dtype and memory layout."""

    def __init__(self, net, x, step_loss, device, dtype, channels_last):
        from pipelines.engines.precision import prepare_network, to_channels_last

        self.net = prepare_network(net.to(device), channels_last=channels_last).train()
        self.x = to_channels_last(x) if channels_last else x
        self.step_loss, self.device, self.dtype = step_loss, device, dtype
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        self.times: list[float] = []
        self.loss = float("nan")

    def step(self, timed: bool) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            loss = self.step_loss(self.net, self.x)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if timed:
            self.times.append(time.perf_counter() - start)
        self.loss = float(loss.detach())


def run_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    build = {"brats": _brats, "lanet": _lanet}[name]
    torch.manual_seed(0)
    net, x, step_loss = build(args, device)
    dtype = _dtype(args.precision, device)
    eager = _Runner(copy.deepcopy(net), x, step_loss, device, None, channels_last=False)
    fast = _Runner(net, x, step_loss, device, dtype, channels_last=True)
    for _ in range(args.warmup):
        eager.step(False)
        fast.step(False)
    for i in range(args.steps):
        eager.step(True)
        fast.step(True)
        print(f"  {name} step {i + 1}/{args.steps}: eager {eager.times[-1]:.2f} s, fast {fast.times[-1]:.2f} s",
              flush=True)
    speedup = min(eager.times) / min(fast.times)
    rel = abs(fast.loss - eager.loss) / max(abs(eager.loss), 1e-12)
    tol = TOLERANCE["float32" if dtype is None else "reduced"]
    label = "float32" if dtype is None else str(dtype).replace("torch.", "")
    print(f"{name}: fast path = channels-last + {label}")
    print(f"  eager float32  fastest {min(eager.times):.3f} s  median {statistics.median(eager.times):.3f} s")
    print(f"  fast           fastest {min(fast.times):.3f} s  median {statistics.median(fast.times):.3f} s")
    print(f"  speed-up {speedup:.2f}x (median {statistics.median(eager.times) / statistics.median(fast.times):.2f}x)")
    print(f"  loss after {args.warmup + args.steps} steps: eager {eager.loss:.5f}, fast {fast.loss:.5f}, "
          f"relative difference {rel:.1e} ({'within' if rel <= tol else 'OUTSIDE'} the tolerance {tol:g})")
    return {"speedup": speedup, "loss_eager": eager.loss, "loss_fast": fast.loss, "loss_rel_diff": rel,
            "within_tolerance": float(rel <= tol), "precision": label}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["brats", "lanet", "both"], default="both")
    parser.add_argument("--size", type=int, nargs=3, default=[64, 64, 48], help="BraTS patch (x, y, z)")
    parser.add_argument("--batch", type=int, default=2, help="BraTS batch")
    parser.add_argument("--image-size", type=int, default=256, help="LA-Net image size (the bundle's)")
    parser.add_argument("--lanet-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["auto", "float32", "bf16"], default="auto")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from pipelines.engines.precision import cpu_bf16_supported

    print(f"torch {torch.__version__}, {args.threads} threads, device {device}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, bfloat16 instructions: {cpu_bf16_supported()}")
    models = ["brats", "lanet"] if args.model == "both" else [args.model]
    results = {name: run_model(name, args, device) for name in models}
    fields = " ".join(
        f"{n}_speedup={r['speedup']:.2f}x {n}_loss_rel_diff={r['loss_rel_diff']:.1e} {n}_precision={r['precision']}"
        for n, r in results.items()
    )
    print(f"RESULT {fields}")
    return results


if __name__ == "__main__":
    main()
