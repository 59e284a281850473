"""CPU throughput of the per-frame image metrics (LPIPS-alex, LPIPS-vgg, SSIM, PSNR).

Run ``python benchmarks/bench_image_metrics.py`` (prints JSON) or call
:func:`bench_image_metrics`. Throughput is in frames per second, where one frame is one
(prediction, target) pair of ``size x size`` RGB uint8 images. LPIPS model construction is
excluded (a warm-up call builds and caches the models first); the best of ``repeats`` timed
runs is reported.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from worldvla_bench.metrics.image_quality import psnr_frames, ssim_frames
from worldvla_bench.metrics.lpips_metric import lpips_frames


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_image_metrics(
    batch_size: int = 4,
    n_frames: int = 8,
    size: int = 256,
    repeats: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure CPU frames/s of each metric on ``n_frames`` random ``size x size`` frame pairs.

    ``batch_size`` is the LPIPS batch size (SSIM/PSNR are computed frame by frame). Returns
    ``{"lpips_alex_fps", "lpips_vgg_fps", "ssim_fps", "psnr_fps"}`` (floats, frames/s) plus
    the settings used: ``n_frames``, ``size``, ``batch_size``, ``repeats``, ``torch_threads``,
    ``device`` (always ``"cpu"``).
    """
    if n_frames < 1 or size < 31 or repeats < 1 or batch_size < 1:
        raise ValueError("need n_frames >= 1, size >= 31, repeats >= 1 and batch_size >= 1")
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, size=(n_frames, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-20, 21, size=target.shape)
    pred = np.clip(target.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    runs: dict[str, Callable[[], Any]] = {
        "lpips_alex": lambda: lpips_frames(pred, target, net="alex", batch_size=batch_size),
        "lpips_vgg": lambda: lpips_frames(pred, target, net="vgg", batch_size=batch_size),
        "ssim": lambda: ssim_frames(pred, target),
        "psnr": lambda: psnr_frames(pred, target),
    }
    # Warm-up: builds/caches the LPIPS models and touches every code path once.
    for net in ("alex", "vgg"):
        lpips_frames(pred[:1], target[:1], net=net, device="cpu")
    ssim_frames(pred[:1], target[:1])
    psnr_frames(pred[:1], target[:1])

    result: dict[str, Any] = {}
    for name, fn in runs.items():
        result[f"{name}_fps"] = n_frames / _best_seconds(fn, repeats)
    result.update(
        n_frames=n_frames,
        size=size,
        batch_size=batch_size,
        repeats=repeats,
        torch_threads=torch.get_num_threads(),
        device="cpu",
    )
    return result


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: print :func:`bench_image_metrics` as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--n-frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    result = bench_image_metrics(
        batch_size=args.batch_size, n_frames=args.n_frames, size=args.size, repeats=args.repeats
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
