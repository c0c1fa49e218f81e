"""Benchmark: MONAI's ``sliding_window_inference`` (defaults) against ``pipelines.inferers.FastSlidingWindowInferer``.

Runs the BraTS bundle's network (AttentionUNet + PAM, features 16-32-64-128, random weights with a fixed seed) on a
BraTS-size volume ``(1, 4, 240, 240, 155)`` (seeded smooth random input inside a brain-like ellipsoid), each variant
in its own subprocess so that its peak resident memory (``ru_maxrss``) is its own, both in the same invocation.
Compares the label maps of the two and prints one ``RESULT`` line. See ``benchmarks/README.md``.

    python benchmarks/sliding_window.py                       # ROI 128^3, 2 threads
    python benchmarks/sliding_window.py --roi 224 224 144     # the bundle's ROI (slow on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

VARIANTS = ("monai", "ours")
PRECISIONS = ("bf16-network", "autocast", "float32")


def make_input(size: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Seeded ``(1, 4, *size)`` volume: smooth random "tissue" per modality inside an ellipsoid, zero outside."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 4, *(max(s // 16, 2) for s in size), generator=g)
    x = F.interpolate(coarse, size=size, mode="trilinear", align_corners=False)
    x = x + 0.1 * torch.randn(x.shape, generator=g)
    grids = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in size), indexing="ij")
    brain = sum((c / 0.85) ** 2 for c in grids) <= 1.0
    return x * brain


def build_network(roi: tuple[int, ...], seed: int = 0) -> torch.nn.Module:
    import networks

    torch.manual_seed(seed)
    return networks.build_segmentation_network(
        backbone="unet", attention="pam", spatial_dims=3, in_channels=4, out_channels=3,
        features=(16, 32, 64, 128), patch_size=roi, slice_axis=-1,
    ).eval()


def run_variant(args: argparse.Namespace) -> None:
    """Child process: run one variant, save its logits, print a JSON line with times and peak RSS.

    Both variants first run one warm-up call on a single window (the top-left-front ``roi``-size crop of the image),
    which pays the first-call costs (oneDNN primitive creation, allocator growth and, with ``--compile``, the
    ``torch.compile`` compilation); that call is timed and reported separately (``warmup_seconds``), and the timed
    call is the whole-volume inference that follows, on the same inferer and network.
    """
    torch.set_num_threads(args.threads)
    roi, size = tuple(args.roi), tuple(args.size)
    network, image = build_network(roi), make_input(size)
    if args.variant == "monai":
        from monai.inferers import sliding_window_inference

        def infer(x: torch.Tensor) -> torch.Tensor:
            return sliding_window_inference(x, roi, 1, network)  # defaults: overlap 0.25, constant, float32

    else:
        from pipelines.inferers import FastSlidingWindowInferer

        infer_ours = FastSlidingWindowInferer(
            roi, sw_batch_size=args.sw_batch_size, overlap=0.25, mode="constant",
            amp=args.precision == "autocast",
            network_dtype=torch.bfloat16 if args.precision == "bf16-network" else None,
            channels_last=not args.no_channels_last, compile=args.compile,
        )

        def infer(x: torch.Tensor) -> torch.Tensor:
            return infer_ours(x, network)

    with torch.inference_mode():
        start, cpu_start = time.perf_counter(), time.process_time()
        infer(image[(slice(None), slice(None), *(slice(0, r) for r in roi))].contiguous())  # one window
        warmup, cpu_warmup = time.perf_counter() - start, time.process_time() - cpu_start
        start, cpu_start = time.perf_counter(), time.process_time()
        out = infer(image)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    torch.save(out.float(), args.save)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    record = {
        "variant": args.variant, "seconds": seconds, "cpu_seconds": cpu_seconds, "warmup_seconds": warmup,
        "warmup_cpu_seconds": cpu_warmup, "peak_rss_gb": peak_gb,
    }
    print(json.dumps({**record, "shape": list(out.shape)}))


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = (a & b).sum().item()
    total = a.sum().item() + b.sum().item()
    return 1.0 if total == 0 else 2.0 * inter / total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roi", type=int, nargs=3, default=[128, 128, 128], help="window size (default 128^3)")
    parser.add_argument("--size", type=int, nargs=3, default=[240, 240, 155], help="volume size (BraTS)")
    parser.add_argument("--sw-batch-size", type=int, default=1, help="windows per forward pass, ours only")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="bf16-network",
        help="ours: bfloat16 copy of the network (default), bfloat16 autocast, or float32",
    )
    parser.add_argument("--no-channels-last", action="store_true", help="ours without channels_last_3d")
    parser.add_argument(
        "--compile", action="store_true",
        help="ours: torch.compile (inductor) the network copy; the compilation is paid in the (untimed) warm-up",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        return run_variant(args)

    total_start = time.perf_counter()
    results, outputs = {}, {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            save = os.path.join(tmp, f"{variant}.pt")
            cmd = [sys.executable, os.path.abspath(__file__), "--variant", variant, "--save", save]
            cmd += argv if argv is not None else sys.argv[1:]
            proc = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            outputs[variant] = torch.load(save)
            r = results[variant]
            print(
                f"{variant:>5}: {r['seconds']:7.1f} s wall  {r['cpu_seconds']:7.1f} s CPU  "
                f"peak RSS {r['peak_rss_gb']:.2f} GB  output {r['shape']}  (not counted: warm-up on one window "
                f"{r['warmup_seconds']:.1f} s wall / {r['warmup_cpu_seconds']:.1f} s CPU)"
            )

    ref, ours = outputs["monai"][0], outputs["ours"][0]
    print(f"max |logit difference| = {(ref - ours).abs().max().item():.4f}")
    brain = make_input(tuple(args.size))[0].abs().sum(0) > 0
    dices = []
    for c in range(ref.shape[0]):
        # random weights give near-constant sigmoid(logit) > 0.5 masks, so threshold each channel at the median of
        # the float32 (MONAI) logits inside the brain: ~50% foreground, the hardest case for agreement
        threshold = ref[c][brain].median()
        d = dice((ref[c] > threshold) & brain, (ours[c] > threshold) & brain)
        d05 = dice(torch.sigmoid(ref[c]) > 0.5, torch.sigmoid(ours[c]) > 0.5)
        print(f"class {c}: Dice (median threshold {threshold:.3f}) = {d:.4f}; Dice (sigmoid > 0.5) = {d05:.4f}")
        dices.append(d)
    speedup = results["monai"]["seconds"] / results["ours"]["seconds"]
    cpu_speedup = results["monai"]["cpu_seconds"] / results["ours"]["cpu_seconds"]
    print(f"total benchmark time {time.perf_counter() - total_start:.0f} s")
    print(
        f"RESULT speedup={speedup:.2f}x cpu_time_speedup={cpu_speedup:.2f}x agreement_min_dice={min(dices):.4f} "
        f"time_monai={results['monai']['seconds']:.1f}s time_ours={results['ours']['seconds']:.1f}s "
        f"peak_rss_ours={results['ours']['peak_rss_gb']:.2f}GB peak_rss_monai={results['monai']['peak_rss_gb']:.2f}GB "
        f"warmup_monai={results['monai']['warmup_seconds']:.1f}s warmup_ours={results['ours']['warmup_seconds']:.1f}s"
    )
    print(
        "timed: one whole-volume call per variant after one warm-up call on a single window; not timed: the warm-up "
        "(first-call costs" + (", torch.compile compilation" if args.compile else "") + "), process start, "
        "network construction, input generation"
    )


if __name__ == "__main__":
    main()
