"""Training-step time of the joint segmentation + classification network with and without its bottleneck extras.

Three variants of :class:`networks.nets.joint_segcls.JointSegClsNet` (EfficientNet-B0 encoder, UNet++ decoder and
CBAM by default), built from the same seed in one process:

- ``baseline``: no Dual-Domain block, no Latent Augmentor;
- ``dual_domain``: with the Dual-Domain block;
- ``full``: with the Dual-Domain block and the Latent Augmentor (BUSI class counts, so normal and malignant are the
  minority classes; every batch holds all three classes, so noise and MixUp run in every step).

A step is a whole training step: ``zero_grad``, ``forward(x, labels)``, :class:`~pipelines.losses.JointSegClsLoss`
(class-weighted), ``backward``, ``AdamW.step``. After ``--warmup`` untimed steps per variant, the variants alternate
step by step for ``--steps`` rounds, so they see the same machine load; the ratios are of the fastest steps
(``full / baseline`` is the target, at most 1.15x) and, for reference, of the median steps.

Usage::

    python benchmarks/joint_segcls_step.py                         # CPU, 2 threads, batch 4 x 1 x 256 x 256
    python benchmarks/joint_segcls_step.py --batch 8 --steps 8
    python benchmarks/joint_segcls_step.py --device cuda --batch 16 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

BUSI_COUNTS = (133, 437, 210)
VARIANTS = {
    "baseline": {"dual_domain": False, "latent_augment": False},
    "dual_domain": {"dual_domain": True, "latent_augment": False},
    "full": {"dual_domain": True, "latent_augment": True},
}


def _batch(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded images, disc-shaped lesion masks (none for class 0, "normal") and labels cycling 0, 1, 2."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.in_channels, args.size, args.size, generator=gen)
    labels = torch.arange(args.batch) % 3
    grid = torch.stack(torch.meshgrid(torch.arange(args.size), torch.arange(args.size), indexing="ij")).float()
    masks = torch.zeros(args.batch, 1, args.size, args.size)
    for i in range(args.batch):
        if labels[i] > 0:
            centre = torch.rand(2, 1, 1, generator=gen) * args.size * 0.5 + args.size * 0.25
            masks[i, 0] = ((grid - centre).square().sum(0) < (args.size / 8) ** 2).float()
    return x.to(device), masks.to(device), labels.to(device)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="efficientnet-b0")
    parser.add_argument("--decoder", default="unetplusplus")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(ROOT))
    from networks.nets.joint_segcls import JointSegClsNet
    from pipelines.losses.joint_segcls import JointSegClsLoss, class_weights

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, masks, labels = _batch(args, device)
    train_labels = torch.repeat_interleave(torch.arange(3), torch.tensor(BUSI_COUNTS))
    loss_fn = JointSegClsLoss(class_weight=class_weights(train_labels, 3)).to(device)

    nets, optimizers = {}, {}
    for name, switches in VARIANTS.items():
        torch.manual_seed(0)
        nets[name] = JointSegClsNet(
            encoder=args.encoder, decoder=args.decoder, in_channels=args.in_channels, num_classes=3,
            class_counts=BUSI_COUNTS, augment_seed=0, **switches,
        ).to(device).train()
        optimizers[name] = torch.optim.AdamW(nets[name].parameters(), lr=1e-4)

    def step(name: str) -> tuple[float, float]:
        """One training step: (wall seconds, process CPU seconds)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        optimizers[name].zero_grad(set_to_none=True)
        loss = loss_fn(nets[name](x, labels=labels), masks, labels)
        loss.backward()
        optimizers[name].step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    started = time.perf_counter()
    for name in VARIANTS:
        for _ in range(args.warmup):
            step(name)
    walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpus: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.steps):
        for name in VARIANTS:
            w, c = step(name)
            walls[name].append(w)
            cpus[name].append(c)
    extras = _extras_time(nets["full"], args.batch, args.size, device, args.steps)

    print(
        f"{args.encoder} / {args.decoder} + CBAM, batch {args.batch} x {args.in_channels} x {args.size} x {args.size}, "
        f"device {args.device}, {args.threads} threads, {args.warmup} warm-up + {args.steps} timed steps per variant "
        "(forward + loss + backward + AdamW), alternating."
    )
    header = "vs baseline (wall fastest / median / CPU fastest)"
    print(
        f"{'variant':<12} {'params':>10} {'wall fastest s':>15} {'wall median s':>14} {'CPU fastest s':>14} "
        f"{header:>50}"
    )
    ratios = {}
    for name in VARIANTS:
        w, c = walls[name], cpus[name]
        ratios[name] = (
            min(w) / min(walls["baseline"]),
            statistics.median(w) / statistics.median(walls["baseline"]),
            min(c) / min(cpus["baseline"]),
        )
        params = sum(p.numel() for p in nets[name].parameters())
        text = " / ".join(f"{r:.3f}x" for r in ratios[name])
        print(f"{name:<12} {params:>10,} {min(w):>15.3f} {statistics.median(w):>14.3f} {min(c):>14.3f} {text:>50}")
    extras_ratio = 1.0 + extras / min(walls["baseline"])
    print(
        f"Dual-Domain + Latent Augmentor alone (forward + backward on the bottleneck, {args.steps} runs, fastest): "
        f"{1000 * extras:.2f} ms per step, i.e. {extras_ratio:.4f}x the fastest baseline step."
    )
    result = {
        "ratio": ratios["full"][0],
        "ratio_median": ratios["full"][1],
        "ratio_cpu": ratios["full"][2],
        "ratio_dual_domain": ratios["dual_domain"][0],
        "ratio_extras": extras_ratio,
    }
    print(
        "RESULT " + " ".join(f"{k}={v:.3f}x" for k, v in result.items()) + " goal<=1.15x "
        f"step_baseline={min(walls['baseline']):.3f}s step_full={min(walls['full']):.3f}s "
        f"total={time.perf_counter() - started:.0f}s"
    )
    return result


def _extras_time(net, batch: int, size: int, device: torch.device, runs: int) -> float:
    """Fastest wall time of forward + backward through ``net``'s Dual-Domain block and Latent Augmentor alone, on a
    bottleneck-sized input ``(batch, C, size / 32, size / 32)`` with the benchmark's labels: the extra work of the
    ``full`` variant, measured without the rest of the step (so far less exposed to machine load)."""
    channels = net.classifier[-1].in_features
    z = torch.randn(batch, channels, size // 32, size // 32, device=device, requires_grad=True)
    labels = (torch.arange(batch) % 3).to(device)
    times = []
    for _ in range(runs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        net.augmentor(net.dual_domain(z), labels).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times[1:])


if __name__ == "__main__":
    main()
