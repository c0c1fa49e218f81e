"""Training-step time with the differentiable Grad-CAM attention loss against CE only, same network and batch.

Two copies of :class:`networks.nets.CAMClassifier` built from the same seed, each trained by
:class:`pipelines.engines.CAMAttentionTrainStep` (the bundle's iteration, called on a minimal engine object):

- ``ce``: ``loss_lambda=1.0`` (CE only: the Grad-CAM is not computed);
- ``attention``: ``loss_lambda=0.5`` with the soft :class:`pipelines.losses.GradCAMAttentionLoss` (``create_graph``
  Grad-CAM of the target class, sigmoid threshold, region of the disease images);
- ``hard`` (reference): the original's non-differentiable step (Grad-CAM without ``create_graph``).

A step is the whole iteration: ``zero_grad``, forward, CE (+ Grad-CAM + attention term), ``backward``,
``Adam.step``. Half the batch is No Finding (empty region), half disease (bottom half of a lung-like box). After
``--warmup`` untimed steps per variant the variants alternate step by step for ``--steps`` rounds, so they see the
same machine load; the ratio is of the fastest steps (``attention / ce``, goal at most 1.3x) and, for reference,
of the median steps. The Grad-CAM gradient is taken with respect to the last feature stage, so its backward (and
the double backward of ``create_graph``) only runs through the pooling + linear head.

Usage::

    python benchmarks/cam_attention_loss.py                          # DenseNet121, CPU, 2 threads, 4 x 1 x 224^2
    python benchmarks/cam_attention_loss.py --backbone resnet50 --batch 8
    python benchmarks/cam_attention_loss.py --device cuda --batch 32 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"ce": (1.0, "soft"), "attention": (0.5, "soft"), "hard": (0.5, "hard")}


def _batch(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Seeded images, labels alternating No Finding / disease, regions (bottom half of a central box) for disease."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(args.batch) % 2
    regions = torch.zeros(args.batch, 1, args.size, args.size)
    s = args.size
    regions[labels == 1, :, s // 2 : int(0.85 * s), int(0.12 * s) : int(0.88 * s)] = 1
    image = torch.randn(args.batch, 1, s, s, generator=gen)
    return {"image": image, "label": labels, "region": regions}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="densenet121")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:  # run as a script from anywhere
        sys.path.insert(0, str(ROOT))
    from networks.nets import CAMClassifier
    from pipelines.engines import CAMAttentionTrainStep
    from pipelines.losses import GradCAMAttentionLoss

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = _batch(args)
    engines, steps = {}, {}
    for name, (lam, mode) in VARIANTS.items():
        torch.manual_seed(0)
        net = CAMClassifier(2, args.backbone).to(device)
        engines[name] = SimpleNamespace(
            network=net, optimizer=torch.optim.Adam(net.parameters(), 1e-5),
            loss_function=torch.nn.CrossEntropyLoss(), amp=False, scaler=None,
            state=SimpleNamespace(epoch=1, device=device),
        )
        steps[name] = CAMAttentionTrainStep(lam, GradCAMAttentionLoss(mode=mode))

    def step(name: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        steps[name](engines[name], batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    started = time.perf_counter()
    for name in VARIANTS:
        for _ in range(args.warmup):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.steps):
        for name in VARIANTS:
            times[name].append(step(name))

    base_min, base_med = min(times["ce"]), statistics.median(times["ce"])
    print(
        f"CAMClassifier({args.backbone}), batch {args.batch} x 1 x {args.size} x {args.size}, device {args.device}, "
        f"{args.threads} threads, {args.warmup} warm-up + {args.steps} timed steps per variant "
        "(CAMAttentionTrainStep: forward + loss + backward + Adam), alternating."
    )
    print(f"{'variant':<10} {'fastest s':>10} {'median s':>10} {'vs ce (fastest / median)':>26}")
    for name, t in times.items():
        ratio = f"{min(t) / base_min:.3f}x / {statistics.median(t) / base_med:.3f}x"
        print(f"{name:<10} {min(t):>10.3f} {statistics.median(t):>10.3f} {ratio:>26}")
    result = {
        "ratio": min(times["attention"]) / base_min,
        "ratio_median": statistics.median(times["attention"]) / base_med,
        "ratio_hard": min(times["hard"]) / base_min,
    }
    print(
        f"RESULT ratio={result['ratio']:.3f}x ratio_median={result['ratio_median']:.3f}x "
        f"ratio_hard={result['ratio_hard']:.3f}x goal<=1.3x step_ce={base_min:.3f}s "
        f"step_attention={min(times['attention']):.3f}s total={time.perf_counter() - started:.0f}s"
    )
    return result


if __name__ == "__main__":
    main()
