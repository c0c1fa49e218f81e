"""Step time and peak memory of every attention block on the UNet and VNet backbones, against no attention.

Each (backbone, attention) variant runs in its own subprocess so that its peak memory can be read on
its own: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` on CPU (the whole process, imports included;
the table also gives the growth after the imports), ``torch.cuda.max_memory_allocated`` on CUDA. A
step is forward + mean-of-logits loss + backward on one random batch, after ``--warmup`` untimed
steps. The time ratio is measured inside each variant's process: after the variant's first timed
step (and its memory reading) the plain backbone is built and the two alternate for ``--steps``
steps each, and the ratio is of their fastest steps, so both see the same load on a shared
machine. The table also gives the fastest and the median of the variant's steps.

The extra row ``pam (loop reference)`` is PAM in the original code's form: a Python loop over the
channels, each with its own ``nn.Sequential`` MLP, and key-slice selection on batch element 0
through numpy (the channel descriptor detached by the numpy round trip). It is registered in the
worker process only, to show what the vectorised :class:`~networks.blocks.pam.ProgressiveAttention`
saves.

Usage::

    python benchmarks/attention_overhead.py                       # CPU, 2 threads, 1 x 4 x 32 x 32 x 32
    python benchmarks/attention_overhead.py --size 64 64 48 --steps 3
    python benchmarks/attention_overhead.py --device cuda --size 128 128 96 --vnet-features 16 32 64 128 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LOOP_PAM = "pam_loop"
ROOT = Path(__file__).resolve().parents[1]


def _register_loop_pam() -> None:
    """Register the original-form PAM as attention ``pam_loop`` (this process only)."""
    import numpy as np
    import torch
    import torch.nn as nn

    from networks.blocks.attention import ATTENTION_BLOCKS, register_attention

    class LoopPAM(nn.Module):
        """PAM as in the original code: a loop over channels, KSS on batch element 0 via numpy."""

        def __init__(self, channels: int, num_slices: int, slice_reduction: int, channel_reduction: int, axis: int):
            super().__init__()
            hidden = max(1, num_slices // min(slice_reduction, num_slices))
            self.mlps = nn.ModuleList(
                nn.Sequential(nn.Linear(num_slices, hidden), nn.ReLU(), nn.Linear(hidden, num_slices), nn.Sigmoid())
                for _ in range(channels)
            )
            c_hidden = max(1, channels // channel_reduction)
            self.fc = nn.Sequential(nn.Linear(channels, c_hidden), nn.ReLU(), nn.Linear(c_hidden, channels), nn.Sigmoid())
            self.axis = axis

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.movedim(x, 2 + self.axis, 2)  # (B, C, D, ...)
            inplane = list(range(2, x.ndim - 1))
            outs, weights = [], []
            for c, mlp in enumerate(self.mlps):
                s = mlp(x[:, c].mean(dim=inplane))  # (B, D)
                weights.append(s)
                outs.append(x[:, c] * s.view(*s.shape, *([1] * (x.ndim - 3))))
            x_sa = torch.stack(outs, dim=1)
            # key-slice selection from batch element 0 only, through numpy (no gradient)
            w0 = torch.stack(weights, dim=1)[0].detach().cpu().numpy()  # (C, D)
            prob = np.exp(w0) / np.exp(w0).sum(-1, keepdims=True)
            keep = prob >= prob.mean(-1, keepdims=True)
            per_slice = x_sa.detach().mean(dim=[d + 1 for d in inplane]).cpu().numpy()  # (B, C, D)
            z = (per_slice * keep).sum(-1) / np.maximum(keep.sum(-1), 1)
            w = self.fc(torch.as_tensor(z, dtype=x.dtype, device=x.device))
            out = x_sa * w.view(*w.shape, *([1] * (x.ndim - 2)))
            return torch.movedim(out, 2, 2 + self.axis)

    if LOOP_PAM in ATTENTION_BLOCKS:
        return

    @register_attention(LOOP_PAM, needs_slices=True)
    def _build(spatial_dims, channels, num_slices=None, slice_axis=-1, slice_reduction=16, channel_reduction=8):
        return LoopPAM(channels, num_slices, slice_reduction, channel_reduction, slice_axis % spatial_dims)


def _worker(cfg: dict) -> dict:
    """Build one variant, time its steps and measure its peak memory."""
    import torch

    torch.set_num_threads(cfg["threads"])
    from networks.registry import create_network

    _register_loop_pam()
    device = torch.device(cfg["device"])
    rss_after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kwargs = dict(cfg["kwargs"])
    if cfg["attention"] == LOOP_PAM and cfg["backbone"] == "vnet":
        kwargs["attention_kwargs"] = {"slice_reduction": 8, "channel_reduction": 4}  # VNet's PAM reductions
    def build(attention: str):
        torch.manual_seed(0)
        kw = kwargs if attention == cfg["attention"] else {k: v for k, v in kwargs.items() if k != "attention_kwargs"}
        return create_network(
            cfg["backbone"], spatial_dims=3, in_channels=cfg["in_channels"], out_channels=3,
            attention=attention, patch_size=cfg["size"], **kw,
        ).to(device)

    def step(model) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        model(x).mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    x = torch.randn(cfg["batch"], cfg["in_channels"], *cfg["size"], device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net = build(cfg["attention"])
    params = sum(p.numel() for p in net.parameters())
    for _ in range(cfg["warmup"]):
        step(net)
    times = [step(net)]
    # peak memory of this variant alone, before the plain backbone is built
    if device.type == "cuda":
        peak, base = torch.cuda.max_memory_allocated(device) / 2**20, 0.0
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        base = rss_after_import / 1024
    plain_times = []
    if cfg["attention"] == "none":
        times += [step(net) for _ in range(cfg["steps"] - 1)]
        plain_times = times
    else:  # time against the plain backbone in alternation, so both see the same load
        plain = build("none")
        for _ in range(cfg["warmup"]):
            step(plain)
        for _ in range(cfg["steps"]):
            plain_times.append(step(plain))
            times.append(step(net))
    return {
        "min": min(times), "median": statistics.median(times), "ratio": min(times) / min(plain_times),
        "peak_mib": peak, "base_mib": base, "params": params,
    }


def _run_variant(cfg: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = str(cfg["threads"])
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cfg)],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"variant {cfg['backbone']}/{cfg['attention']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _attention_names(requested: list[str] | None) -> list[str]:
    if requested:
        return requested
    from networks.blocks.attention import list_attention_blocks

    names = [n for n in list_attention_blocks() if n != "none"]
    return ["none", *names, LOOP_PAM]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["unet", "vnet"])
    parser.add_argument("--attentions", nargs="+", default=None, help=f"default: all registered + {LOOP_PAM}")
    parser.add_argument("--size", nargs=3, type=int, default=[32, 32, 32], help="spatial size (slice axis last)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--in-channels", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--unet-features", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--vnet-features", nargs="+", type=int, default=[8, 16, 32, 64, 128],
                        help="default halves the paper's widths (16 ... 256) to fit a CPU run in minutes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    features = {"unet": args.unet_features, "vnet": args.vnet_features}
    attentions = _attention_names(args.attentions)
    started = time.perf_counter()
    unit = "peak CUDA alloc (MiB)" if args.device.startswith("cuda") else "peak RSS (MiB)"
    lines = [
        f"Input {args.batch} x {args.in_channels} x {' x '.join(map(str, args.size))}, device {args.device}, "
        f"{args.threads} threads, {args.warmup} warm-up + {args.steps} timed steps (forward + backward).",
        "",
        f"| backbone | attention | params | step min (s) | step median (s) | time vs none | {unit} | "
        "memory vs none |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backbone in args.backbones:
        rows = {}
        for attention in attentions:
            cfg = {
                "backbone": backbone, "attention": attention, "size": args.size, "batch": args.batch,
                "in_channels": args.in_channels, "device": args.device, "threads": args.threads,
                "warmup": args.warmup, "steps": args.steps, "kwargs": {"features": features.get(backbone)}
                if backbone in features else {},
            }
            rows[attention] = result = _run_variant(cfg)
            print(f"{backbone:5s} {attention:10s} {result}", file=sys.stderr, flush=True)
        ref = rows.get("none")
        for attention, r in rows.items():
            label = "pam (loop reference)" if attention == LOOP_PAM else attention
            t_ratio = f"{r['ratio']:.2f}x"
            if args.device.startswith("cuda"):
                mem = f"{r['peak_mib']:.0f}"
                m_ratio = f"{r['peak_mib'] / ref['peak_mib']:.2f}x" if ref else "-"
            else:  # ratio of the growth after imports
                mem = f"{r['peak_mib']:.0f} (+{r['peak_mib'] - r['base_mib']:.0f})"
                m_ratio = f"{(r['peak_mib'] - r['base_mib']) / (ref['peak_mib'] - ref['base_mib']):.2f}x" if ref else "-"
            lines.append(
                f"| {backbone} | {label} | {r['params'] / 1e6:.2f}M | {r['min']:.2f} | {r['median']:.2f} | "
                f"{t_ratio} | {mem} | {m_ratio} |"
            )
    lines.append("")
    lines.append(f"Total benchmark time {time.perf_counter() - started:.0f} s.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
