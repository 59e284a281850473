"""CPU throughput of FVD's I3D feature extraction (preprocessing + network), in frames/s.

Usage: ``python benchmarks/bench_fvd.py [--batch-size 4] [--frames 16] [--repeats 3]``
prints one JSON object; :func:`bench_fvd` returns the same dict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from worldvla_bench.metrics.fvd import get_fvd_convention, i3d_features
from worldvla_bench.metrics.i3d import load_i3d


def bench_fvd(
    batch_size: int = 4,
    frames: int = 16,
    size: int = 256,
    repeats: int = 3,
    convention: str = "tf",
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """Time :func:`i3d_features` on random uint8 clips ``(batch_size, frames, size, size, 3)``.

    One warm-up call (not timed) precedes ``repeats`` timed calls; the reported throughput
    uses the median call. ``threads`` sets ``torch.set_num_threads`` for the run (restored
    afterwards); None keeps torch's default.
    """
    if batch_size < 1 or frames < 9 or repeats < 1:
        raise ValueError("need batch_size >= 1, frames >= 9 and repeats >= 1")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(seed)
        videos = rng.integers(0, 256, (batch_size, frames, size, size, 3), dtype=np.uint8)
        start = time.perf_counter()
        model = load_i3d()
        load_s = time.perf_counter() - start
        conv = get_fvd_convention(convention)
        i3d_features(videos, conv, batch_size=batch_size, model=model)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            i3d_features(videos, conv, batch_size=batch_size, model=model)
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        n_frames = batch_size * frames
        return {
            "benchmark": "fvd_i3d_features",
            "frames_per_s": n_frames / median,
            "clips_per_s": batch_size / median,
            "seconds_per_batch": median,
            "seconds_all": times,
            "model_load_s": load_s,
            "batch_size": batch_size,
            "frames_per_clip": frames,
            "input_size": [size, size],
            "protocol": conv.name,
            "dtype": "float32",
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "machine": platform.machine(),
        }
    finally:
        torch.set_num_threads(previous_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--protocol", default="tf")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    result = bench_fvd(
        batch_size=args.batch_size,
        frames=args.frames,
        size=args.size,
        repeats=args.repeats,
        convention=args.protocol,
        threads=args.threads,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
