"""Benchmark: lesion-detection inference frames per second at 512 x 512, with and without the scanner-frame crop.

Runs the ``busi_detection`` bundle's default detector (``network_def`` and ``detector`` of
``bundles/busi_detection/configs/inference.yaml``: MONAI RetinaNet on a ResNet-FPN, random weights from a fixed seed,
eval mode) on seeded synthetic scanner frames (a speckled ultrasound image area with a dark lesion, surrounded by a
burnt-in GUI: text-like blocks, a depth scale, a colour bar), the frames already in memory as the predictor loads them
(``{"image": MetaTensor (1, H, W)}`` in [0, 255]). One frame's time is what
:class:`pipelines.predictors.DetectionPredictor` spends on it apart from reading the file and writing the outputs:
the bundle's image pre-processing (:func:`transforms.recipes.detection_image_transforms`), the detector, and the boxes
mapped back to the frame (:func:`transforms.recipes.boxes_to_original`). Two settings:

- ``resize``: ``crop_frame=False, clahe=False``: the whole frame resized to ``size`` x ``size``;
- ``crop+clahe``: ``crop_frame=True, clahe=True``: the scanner-frame crop, the resize, CLAHE.

After ``--warmup`` untimed rounds the settings alternate frame by frame for ``--repeats`` rounds over ``--frames``
frames, so both see the same load on a shared machine; then the pre-processing alone runs ``--prep-repeats`` rounds
the same way (it is cheap, so its cost is measured apart from the detector's noise). Printed per setting: the median
and the fastest wall time per frame with their frames per second, the median process CPU time per frame (all
threads; less disturbed by other jobs than the wall time) and the median pre-processing time; the ``RESULT`` line
gives the ratios ``crop+clahe / resize`` of the frames per second (median, fastest, CPU). See
``benchmarks/README.md``.

    python benchmarks/detection_inference.py                       # 512 x 512, 2 threads, 640 x 480 frames
    python benchmarks/detection_inference.py --threads 1 --repeats 5
    python benchmarks/detection_inference.py --overlay cpu.yaml           # the CPU preset's network at 512 x 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"resize": dict(crop_frame=False, clahe=False), "crop+clahe": dict(crop_frame=True, clahe=True)}


def make_frame(height: int, width: int, seed: int):
    """Seeded ``(1, H, W)`` float32 scanner frame in [0, 255]: black background, a speckled image area with a dark
    elliptic lesion off-centre, GUI text blocks near the border, a depth scale with ticks and a colour bar."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    frame = np.zeros((height, width), dtype=np.float32)
    r0, r1 = int(0.12 * height), int(0.92 * height)
    c0, c1 = int(0.16 * width) + int(rng.integers(0, 0.05 * width)), int(0.80 * width)
    h, w = r1 - r0, c1 - c0
    tissue = ndimage.gaussian_filter(rng.random((h, w)), 2.0)
    tissue = 60 + 140 * (tissue - tissue.min()) / (np.ptp(tissue) + 1e-6) * rng.gamma(4.0, 0.25, (h, w))
    rows, cols = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.08, 0.2) * h, rng.uniform(0.08, 0.2) * w
    tissue[((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0] *= 0.25
    frame[r0:r1, c0:c1] = np.clip(tissue, 1, 255)
    for k in range(int(rng.integers(3, 7))):  # text-like blocks in the top and bottom margins
        tr = int(rng.integers(2, max(3, r0 - 10))) if k % 2 else int(rng.integers(r1 + 2, height - 8))
        tc = int(rng.integers(0, width - 60))
        frame[tr:tr + 6, tc:tc + int(rng.integers(20, 60)):3] = 230
    frame[r0:r1:10, c1 + 4:c1 + 10] = 200  # depth scale ticks
    frame[r0 + h // 4:r1 - h // 4, width - 12:width - 4] = np.linspace(255, 40, r1 - r0 - 2 * (h // 4))[:, None]
    return frame[None]


def build_detector(size: int, seed: int, overlays: list[str] = ()):
    """The bundle's detector (``inference.yaml``, then ``overlays`` of the bundle's ``configs/`` merged, e.g.
    ``cpu.yaml``'s network), random weights from ``seed``, eval mode; and the config parser."""
    import torch
    from monai.bundle import ConfigParser

    configs = ROOT / "bundles" / "busi_detection" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "inference.yaml"), *(str(configs / name) for name in overlays)])
    parser["device"] = "$torch.device('cpu')"
    parser["image_size"] = size
    torch.manual_seed(seed)
    return parser.get_parsed_content("detector").eval(), parser


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="network input size S (S x S, default 512)")
    parser.add_argument("--frame", type=int, nargs=2, default=[480, 640], metavar=("H", "W"),
                        help="scanner frame size (default 480 x 640)")
    parser.add_argument("--frames", type=int, default=2, help="different frames per round (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over the frames (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--prep-repeats", type=int, default=10,
                        help="rounds of the pre-processing alone, timed separately (default 10)")
    parser.add_argument("--overlay", nargs="*", default=[],
                        help="bundle configs merged after inference.yaml, e.g. cpu.yaml (its narrower network)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS and torch.set_num_threads (default 2)")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported
    sys.path.insert(0, str(ROOT))

    import torch
    from monai.data import MetaTensor

    from transforms import recipes

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    detector, config = build_detector(args.size, seed=0, overlays=args.overlay)
    described = (f"depth {config['depth']}, returned layers {config['returned_layers']}, anchors "
                 f"{config['anchor_sizes']}" + (f" (+ {', '.join(args.overlay)})" if args.overlay else ""))
    channels = int(config.get_parsed_content("channels"))
    frames = []
    for k in range(args.frames):
        image = torch.from_numpy(make_frame(*args.frame, seed=k))
        frames.append({"image": MetaTensor(image, meta={"filename_or_obj": f"frame{k}.png",
                                                         "spatial_shape": list(args.frame)})})
    pipelines = {name: recipes.detection_image_transforms(args.size, image_key="image", channels=channels, **kw)
                 for name, kw in SETTINGS.items()}

    def one(name: str, raw: dict) -> tuple[float, float, float]:
        start, cpu_start = time.perf_counter(), time.process_time()
        data = pipelines[name](dict(raw))
        with torch.inference_mode():
            out = detector(torch.as_tensor(data["image"]).float()[None])[0]
        recipes.boxes_to_original(out["box"].float(), data)
        return time.perf_counter() - start, time.process_time() - cpu_start, len(out["box"])

    times, cpu = ({name: [] for name in SETTINGS} for _ in range(2))
    for round_ in range(args.warmup + args.repeats):
        for raw in frames:
            for name in SETTINGS:  # alternate: both settings see the same load
                t, c, _ = one(name, raw)
                if round_ >= args.warmup:
                    times[name].append(t)
                    cpu[name].append(c)
    # the pre-processing alone, many times (cheap): the cost of the crop and CLAHE on its own
    preps, prep_cpu = ({name: [] for name in SETTINGS} for _ in range(2))
    for _ in range(args.prep_repeats):
        for raw in frames:
            for name in SETTINGS:
                start, cpu_start = time.perf_counter(), time.process_time()
                pipelines[name](dict(raw))
                preps[name].append(time.perf_counter() - start)
                prep_cpu[name].append(time.process_time() - cpu_start)
    load_end = os.getloadavg()

    print(f"busi_detection inference.yaml detector (random weights; {described}), input {channels} x {args.size} x {args.size}, "
          f"frames {args.frame[0]} x {args.frame[1]}, {args.threads} thread(s), {args.frames} frames x "
          f"{args.repeats} rounds after {args.warmup} warm-up round(s); load average "
          f"{load_start[0]:.2f} -> {load_end[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    fps, best_fps, cpu_ms, prep_ms = {}, {}, {}, {}
    for name in SETTINGS:
        median = statistics.median(times[name])
        fps[name], best_fps[name] = 1.0 / median, 1.0 / min(times[name])
        cpu_ms[name], prep_ms[name] = statistics.median(cpu[name]) * 1000, statistics.median(preps[name]) * 1000
        print(f"{name:>10}: {median * 1000:8.1f} ms/frame wall median ({fps[name]:.3f} frames/s), fastest "
              f"{min(times[name]) * 1000:.1f} ms ({best_fps[name]:.3f} frames/s); process CPU {cpu_ms[name]:.1f} "
              f"ms/frame; pre-processing alone {prep_ms[name]:.1f} ms wall, "
              f"{statistics.median(prep_cpu[name]) * 1000:.1f} ms CPU (medians of {len(preps[name])})")
    ratio = fps["crop+clahe"] / fps["resize"]
    best_ratio = best_fps["crop+clahe"] / best_fps["resize"]
    cpu_ratio = cpu_ms["resize"] / cpu_ms["crop+clahe"]
    print(f"RESULT fps_resize={fps['resize']:.3f} fps_crop_clahe={fps['crop+clahe']:.3f} "
          f"ratio_crop_clahe_vs_resize={ratio:.3f} ratio_fastest={best_ratio:.3f} cpu_ratio={cpu_ratio:.3f} "
          f"prep_ms_resize={prep_ms['resize']:.1f} prep_ms_crop_clahe={prep_ms['crop+clahe']:.1f} "
          f"size={args.size} threads={args.threads}")


if __name__ == "__main__":
    main()
