"""Speed of the `worldvla` world model's rollout: frames fed back as pixels (decode -> re-encode,
the default) or as codes (`feedback='codes'`), greedy or sampled (temperature 1, top-k 50), on the
shipped tiny checkpoint (CPU, 1 thread, a few steps from random 64 px frames).

`ms per frame` is the wall time of `predict_many` over all clips and steps divided by the frames
it predicts (the first call, a warm-up, is not timed); `mean abs vs pixels greedy` (0-255) is
how far each rollout's frames are from the default rollout's.

    .venv/bin/python benchmarks/wm_feedback_decoding.py [--steps 5 --clips 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = (("pixels", {}), ("codes", {}), ("pixels", {"temperature": 1.0, "top_k": 50}),
            ("codes", {"temperature": 1.0, "top_k": 50}))


def bench_wm_feedback(steps: int = 5, clips: int = 4, repeats: int = 2, threads: int = 1,
                      seed: int = 0) -> list[dict[str, Any]]:
    """One row per (feedback, decoding) variant; see the module docstring."""
    from worldvla_bench.integrations.worldvla.world_model import WorldVLAWorldModel

    rng = np.random.default_rng(seed)
    items = [(rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8),
              rng.uniform(-1, 1, (steps, 7)), "put the bowl on the plate", None)
             for _ in range(clips)]
    rows, reference = [], None
    for feedback, sampling in VARIANTS:
        model = WorldVLAWorldModel(feedback=feedback, num_threads=threads, seed=seed, **sampling)
        out = model.predict_many(items)  # warm-up
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = model.predict_many(items)
            timings.append(time.perf_counter() - start)
        model.close()
        frames = np.stack(out).astype(np.float64)
        reference = frames if reference is None else reference
        rows.append({"feedback": feedback,
                     "decoding": "greedy" if not sampling else
                     f"T={sampling['temperature']} top_k={sampling['top_k']}",
                     "clips": clips, "steps": steps, "threads": threads,
                     "ms_per_frame": round(1e3 * min(timings) / (clips * steps), 1),
                     "mean_abs_vs_pixels_greedy": round(float(np.abs(frames - reference).mean()),
                                                        2)})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| feedback | decoding | ms per frame | mean abs vs pixels greedy |",
             "|---|---|---|---|"]
    lines += [f"| {r['feedback']} | {r['decoding']} | {r['ms_per_frame']} | "
              f"{r['mean_abs_vs_pixels_greedy']} |" for r in rows]
    first = rows[0]
    return (f"World model `worldvla` (shipped tiny), {first['clips']} clips x {first['steps']} "
            f"steps, CPU {first['threads']} thread(s)\n\n" + "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = bench_wm_feedback(args.steps, args.clips, args.repeats, args.threads)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
